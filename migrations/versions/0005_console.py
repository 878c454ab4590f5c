"""The privacy officer's console: anomaly rule settings, findings and reviews, verification runs.

Revision ID: 0005_console
Revises: 0004_portal
"""

import sqlalchemy as sa
from alembic import op

from vault.models import UtcDateTime

revision = "0005_console"
down_revision = "0004_portal"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "console_rules",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), primary_key=True),
        sa.Column("settings", sa.Text(), nullable=False),
        _ts("updated_at"),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "console_finding",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("message", sa.String(400), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("department", sa.String(128), nullable=True),
        _ts("first_at"),
        _ts("last_at"),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sequences", sa.JSON(), nullable=False),
        _ts("detected_at"),
        _ts("updated_at"),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("reviewed_at", nullable=True),
        sa.Column("reviewed_by", sa.String(200), nullable=True),
        sa.Column("review_note", sa.String(2000), nullable=True),
        sa.UniqueConstraint("tenant_id", "key", name="uq_console_finding_key"),
    )
    op.create_index("ix_console_finding_list", "console_finding", ["tenant_id", "status", "first_at"])
    op.create_table(
        "console_verification",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("checkpoints", sa.Integer(), nullable=False),
        sa.Column("first_bad_seq", sa.BigInteger(), nullable=True),
        sa.Column("problem", sa.String(200), nullable=True),
    )
    op.create_index("ix_console_verification_latest", "console_verification", ["tenant_id", "started_at"])


def downgrade() -> None:
    op.drop_table("console_verification")
    op.drop_table("console_finding")
    op.drop_table("console_rules")
