"""back-channel logouts: claim token (who holds a row's lease) and a jti kept per logout

The claim token is the e-mail outbox's (0007): only the worker holding a row may renew its
lease, mark it sent or release it. The jti is chosen when the logout is queued and sent
at every attempt, so that a service can recognise a token it already received.

Revision ID: 0013
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "oidc_backchannel_logouts"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("jti", sa.String(length=32), nullable=True))
    # Rows still to send get their jti now (sent ones keep none: nothing to recognise).
    bind = op.get_bind()
    table = sa.table(
        TABLE,
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("jti", sa.String),
    )
    pending = bind.execute(sa.select(table.c.id).where(table.c.status == "pending")).scalars()
    for row_id in list(pending):
        bind.execute(
            sa.update(table).where(table.c.id == row_id).values(jti=secrets.token_urlsafe(16))
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("jti")
        batch_op.drop_column("claim_token")
