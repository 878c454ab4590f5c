"""Consent: OAuth clients, the purpose register, consent requests, grants, replay and revocation lists.

Revision ID: 0003_consent
Revises: 0002_audit
"""

import sqlalchemy as sa
from alembic import op

from vault.models import UtcDateTime

revision = "0003_consent"
down_revision = "0002_audit"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "consent_client",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("department_id", sa.String(32), sa.ForeignKey("department.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("jwks", sa.String(), nullable=True),
        sa.Column("jwks_uri", sa.String(2000), nullable=True),
        sa.Column("dpop_bound", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("disabled_at", nullable=True),
    )
    op.create_index("ix_consent_client_tenant", "consent_client", ["tenant_id", "department_id"])
    op.create_table(
        "consent_purpose",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), primary_key=True),
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("description_nl", sa.String(2000), nullable=False),
        sa.Column("description_en", sa.String(2000), nullable=False),
        sa.Column("legal_basis", sa.String(32), nullable=False),
        sa.Column("statute", sa.String(500), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("writable_categories", sa.JSON(), nullable=False),
        sa.Column("max_days", sa.Integer(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "consent_request",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("client_id", sa.String(64), sa.ForeignKey("consent_client.id"), nullable=False),
        sa.Column("department_id", sa.String(32), sa.ForeignKey("department.id"), nullable=False),
        sa.Column("resident_id", sa.String(32), sa.ForeignKey("resident.id"), nullable=True),
        sa.Column("auth_req_hash", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("purpose_code", sa.String(64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=False),
        sa.Column("binding_message", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        _ts("last_polled_at", nullable=True),
        _ts("expires_at"),
        _ts("created_at"),
        _ts("decided_at", nullable=True),
        _ts("token_issued_at", nullable=True),
    )
    # The resident's inbox: newest first, keyset-paginated.
    op.create_index(
        "ix_consent_request_resident", "consent_request", ["tenant_id", "resident_id", "created_at", "id"]
    )
    op.create_table(
        "consent_grant",
        sa.Column("id", sa.String(32), primary_key=True),  # the live check is this primary-key look-up
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("resident_id", sa.String(32), sa.ForeignKey("resident.id"), nullable=False),
        sa.Column("department_id", sa.String(32), sa.ForeignKey("department.id"), nullable=False),
        sa.Column("department_code", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), sa.ForeignKey("consent_client.id"), nullable=False),
        sa.Column(
            "request_id", sa.String(32), sa.ForeignKey("consent_request.id"), nullable=False, unique=True
        ),
        sa.Column("purpose_code", sa.String(64), nullable=False),
        sa.Column("legal_basis", sa.String(32), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("may_write", sa.JSON(), nullable=False),
        _ts("valid_from"),
        _ts("valid_until"),
        _ts("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(16), nullable=True),
        sa.Column("refresh_hash", sa.LargeBinary(32), nullable=True),
        _ts("tokens_revoked_before", nullable=True),
        _ts("created_at"),
    )
    op.create_index(
        "ix_consent_grant_resident", "consent_grant", ["tenant_id", "resident_id", "created_at", "id"]
    )
    op.create_table(
        "consent_used_assertion",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        _ts("expires_at"),
    )
    op.create_index("ix_consent_used_assertion_expires_at", "consent_used_assertion", ["expires_at"])
    op.create_table(
        "consent_revoked_token",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("grant_id", sa.String(32), sa.ForeignKey("consent_grant.id"), nullable=False),
        _ts("revoked_at"),
        _ts("expires_at"),
    )
    op.create_index("ix_consent_revoked_token_expires_at", "consent_revoked_token", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_consent_revoked_token_expires_at", "consent_revoked_token")
    op.drop_table("consent_revoked_token")
    op.drop_index("ix_consent_used_assertion_expires_at", "consent_used_assertion")
    op.drop_table("consent_used_assertion")
    op.drop_index("ix_consent_grant_resident", "consent_grant")
    op.drop_table("consent_grant")
    op.drop_index("ix_consent_request_resident", "consent_request")
    op.drop_table("consent_request")
    op.drop_table("consent_purpose")
    op.drop_index("ix_consent_client_tenant", "consent_client")
    op.drop_table("consent_client")
