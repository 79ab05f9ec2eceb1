"""outbox mails queued as their facts (status « facts »), rendered by the deliverer (issue 13)

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from authserver.plural import plural

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_mails") as batch_op:
        batch_op.add_column(sa.Column("template", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("context", sa.Text(), nullable=True))
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    waiting = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM outbox_mails WHERE status = 'facts'"))
        .scalar()
    )
    if waiting:
        # Their words exist only once a deliverer renders them: nothing is dropped silently.
        raise RuntimeError(
            f"{plural(waiting, 'e-mail')} still queued as their facts: deliver them first "
            "(authserver mail deliver --once), then downgrade"
        )
    with op.batch_alter_table("outbox_mails") as batch_op:
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("context")
        batch_op.drop_column("template")
