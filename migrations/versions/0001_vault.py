"""The vault: tenants, key versions, categories, residents, records, departments, signing keys.

Revision ID: 0001_vault
Revises:
"""

import sqlalchemy as sa
from alembic import op

from vault.models import UtcDateTime

revision = "0001_vault"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("slug", sa.String(63), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("current_kek_version", sa.Integer(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "key_version",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        _ts("created_at"),
        _ts("retired_at", nullable=True),
    )
    op.create_table(
        "category",
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), primary_key=True),
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("json_schema", sa.Text(), nullable=False),
        sa.Column("special", sa.Boolean(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "resident",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False, index=True),
        sa.Column("bsn_pseudonym", sa.LargeBinary(32), nullable=True),
        sa.Column("bsn_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped_data_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_version", sa.Integer(), nullable=True),
        sa.Column("audit_pseudonym", sa.String(32), nullable=False, index=True),
        _ts("created_at"),
        _ts("erased_at", nullable=True),
        sa.UniqueConstraint("tenant_id", "bsn_pseudonym", name="uq_resident_bsn"),
    )
    op.create_index("ix_resident_kek", "resident", ["tenant_id", "kek_version"])
    op.create_table(
        "record",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("resident_id", sa.String(32), sa.ForeignKey("resident.id"), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("tenant_id", "resident_id", "category", name="uq_record"),
    )
    op.create_table(
        "record_version",
        sa.Column("record_id", sa.String(32), sa.ForeignKey("record.id"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "department",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(32), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_department_code"),
    )

    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("purpose", sa.String(32), nullable=False, index=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("wrapped_private", sa.LargeBinary(), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("retired_at", nullable=True),
    )


def downgrade() -> None:
    for table in (
        "signing_key",
        "department",
        "record_version",
        "record",
        "resident",
        "category",
        "key_version",
        "tenant",
    ):
        op.drop_table(table)
