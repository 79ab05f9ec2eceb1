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
    bind = op.get_bind()
    # Not sent yet (waiting, or failed and requeueable): their words exist only once a
    # deliverer makes them, at the send. Nothing is dropped silently.
    waiting = bind.execute(
        sa.text(
            "SELECT count(*) FROM outbox_mails WHERE template IS NOT NULL AND status <> 'sent'"
        )
    ).scalar()
    if waiting:
        raise RuntimeError(
            f"{plural(waiting, 'e-mail')} still queued as their facts: deliver them first "
            "(authserver mail deliver --once), then downgrade"
        )
    # A sent alert keeps its facts, not its words (they were made at its send).
    bind.execute(sa.text("UPDATE outbox_mails SET body_text = '' WHERE body_text IS NULL"))
    with op.batch_alter_table("outbox_mails") as batch_op:
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("context")
        batch_op.drop_column("template")
