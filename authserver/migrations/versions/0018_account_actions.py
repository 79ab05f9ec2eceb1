"""helpdesk audit (issue 14): account_actions, append-only like security_actions

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "account_actions is append-only: the audit trail cannot be edited"


def upgrade() -> None:
    op.create_table(
        "account_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_actions")),
    )
    op.create_index(
        "ix_account_actions_user_id_created_at",
        "account_actions",
        ["user_id", "created_at"],
        unique=False,
    )
    op.create_index("ix_account_actions_actor_id", "account_actions", ["actor_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION account_actions_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END;
            $$
        """)
        op.execute("""
            CREATE TRIGGER account_actions_no_update_delete
            BEFORE UPDATE OR DELETE ON account_actions
            FOR EACH ROW EXECUTE FUNCTION account_actions_append_only()
        """)
        op.execute("""
            CREATE TRIGGER account_actions_no_truncate
            BEFORE TRUNCATE ON account_actions
            FOR EACH STATEMENT EXECUTE FUNCTION account_actions_append_only()
        """)
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER account_actions_no_{event.lower()}
                BEFORE {event} ON account_actions
                BEGIN
                    SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}');
                END
            """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS account_actions_no_truncate ON account_actions")
        op.execute("DROP TRIGGER IF EXISTS account_actions_no_update_delete ON account_actions")
        op.execute("DROP FUNCTION IF EXISTS account_actions_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS account_actions_no_update")
        op.execute("DROP TRIGGER IF EXISTS account_actions_no_delete")
    op.drop_index("ix_account_actions_actor_id", table_name="account_actions")
    op.drop_index("ix_account_actions_user_id_created_at", table_name="account_actions")
    op.drop_table("account_actions")
