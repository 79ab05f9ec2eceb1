"""establishments, memberships, certification requests

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "establishments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("siret", sa.String(length=14), nullable=False),
        sa.Column("siren", sa.String(length=9), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("postal_code", sa.String(length=10), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("naf_code", sa.String(length=8), nullable=False),
        sa.Column("naf_label", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_establishments")),
        sa.UniqueConstraint("siret", name=op.f("uq_establishments_siret")),
    )
    op.create_index(op.f("ix_establishments_siren"), "establishments", ["siren"], unique=False)
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"],
            name=op.f("fk_memberships_decided_by_id_users"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["establishment_id"], ["establishments.id"],
            name=op.f("fk_memberships_establishment_id_establishments"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("user_id", name="uq_memberships_user_id"),
    )
    op.create_index(
        "ix_memberships_establishment_id_status", "memberships", ["establishment_id", "status"]
    )
    op.create_table(
        "certification_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("provider_reference", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"],
            name=op.f("fk_certification_requests_decided_by_id_users"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_certification_requests_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certification_requests")),
        sa.UniqueConstraint(
            "provider_reference", name=op.f("uq_certification_requests_provider_reference")
        ),
    )
    op.create_index(
        op.f("ix_certification_requests_user_id"), "certification_requests", ["user_id"]
    )
    op.create_index(
        "ix_certification_requests_status_created",
        "certification_requests",
        ["status", "created_at"],
    )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("certified_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("certified_at")
    op.drop_table("certification_requests")
    op.drop_table("memberships")
    op.drop_index(op.f("ix_establishments_siren"), table_name="establishments")
    op.drop_table("establishments")
