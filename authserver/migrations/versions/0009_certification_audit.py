"""certification requests outlive the account: user_id SET NULL, identifiant and SIRET kept

Revision ID: 0009
Revises: 0008

The rows are the audit of who certified which account (an anti-fraud check): deleting the
account detaches them instead of deleting them, like login events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FK = "fk_certification_requests_user_id_users"


def upgrade() -> None:
    with op.batch_alter_table("certification_requests") as batch_op:
        batch_op.add_column(sa.Column("account_username", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("account_siret", sa.String(length=14), nullable=True))
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.create_foreign_key(FK, "users", ["user_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    op.execute("DELETE FROM certification_requests WHERE user_id IS NULL")
    with op.batch_alter_table("certification_requests") as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.create_foreign_key(FK, "users", ["user_id"], ["id"], ondelete="CASCADE")
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("account_siret")
        batch_op.drop_column("account_username")
