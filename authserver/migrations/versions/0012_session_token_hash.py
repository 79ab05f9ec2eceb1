"""auth_sessions.token_hash: the cookie's hash, apart from the session's lasting id

A re-authentication of the same user in the same browser gives the browser a new
cookie value without ending the session (its OAuth tokens, its OIDC sid).

Revision ID: 0012
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("token_hash", sa.LargeBinary(length=32), nullable=True))
    op.execute("UPDATE auth_sessions SET token_hash = id_hash")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.alter_column("token_hash", existing_type=sa.LargeBinary(length=32), nullable=False)
        batch.create_unique_constraint(op.f("uq_auth_sessions_token_hash"), ["token_hash"])


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_constraint(op.f("uq_auth_sessions_token_hash"), type_="unique")
        batch.drop_column("token_hash")
