"""The resident portal: server-side sessions and representatives' mandates.

Revision ID: 0004_portal
Revises: 0003_consent
"""

import sqlalchemy as sa
from alembic import op

from vault.models import UtcDateTime

revision = "0004_portal"
down_revision = "0003_consent"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "portal_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=True),
        sa.Column("resident_id", sa.String(32), sa.ForeignKey("resident.id"), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("last_seen_at"),
        _ts("expires_at"),
    )
    op.create_index("ix_portal_session_expires_at", "portal_session", ["expires_at"])
    op.create_table(
        "mandate",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("principal_id", sa.String(32), sa.ForeignKey("resident.id"), nullable=False),
        sa.Column("representative_id", sa.String(32), sa.ForeignKey("resident.id"), nullable=False),
        sa.Column("may_view", sa.Boolean(), nullable=False),
        sa.Column("may_decide", sa.Boolean(), nullable=False),
        _ts("valid_from"),
        _ts("valid_until"),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
    )
    op.create_index("ix_mandate_principal_id", "mandate", ["principal_id"])
    op.create_index("ix_mandate_representative_id", "mandate", ["representative_id"])


def downgrade() -> None:
    op.drop_table("mandate")
    op.drop_table("portal_session")
