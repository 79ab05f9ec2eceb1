"""Reset and activation-link requests queued for the mail worker (issue 11, timing)

The request only writes a row here, the same whatever was typed; the worker finds the
account and sends the e-mail later.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_mail_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("username_key", sa.String(length=64), nullable=True),
        sa.Column("email_key", sa.String(length=254), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_mail_jobs")),
    )


def downgrade() -> None:
    op.drop_table("account_mail_jobs")
