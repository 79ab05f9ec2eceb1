"""oidc signing keys: signs_from (a rotated key is published before it signs)

Revision ID: 0011
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oidc_signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signs_from", sa.DateTime(), nullable=True))
    op.execute("UPDATE oidc_signing_keys SET signs_from = created_at")
    with op.batch_alter_table("oidc_signing_keys", schema=None) as batch_op:
        batch_op.alter_column("signs_from", existing_type=sa.DateTime(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_signing_keys", schema=None) as batch_op:
        batch_op.drop_column("signs_from")
