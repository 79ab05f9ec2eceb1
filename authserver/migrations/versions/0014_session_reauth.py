"""Sessions record their last re-authentication apart from their login (issue 11).

A password typed on « Confirmez votre identité » proves presence for sensitive actions; it
must not refresh the login's ``authenticated_at`` / ``method`` / ``amr``, which OpenID
Connect reports (``auth_time``, ``acr``, ``amr``) and step-up decisions read.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reauthenticated_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reauth_method", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_column("reauth_method")
        batch_op.drop_column("reauthenticated_at")
