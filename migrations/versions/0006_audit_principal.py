"""The audit log: an index on the person an actor acted for, so a resident's history is a look-up.

``AuditQuery(involving=…)`` (the "who saw my data" page, the resident's export, ``/api/v1/audit``)
matches the data subject, the actor or ``on_behalf_of``. The first two had indexes, the third none,
so the OR read the tenant's whole log. With this index each branch of the OR is an index look-up
(PostgreSQL: a BitmapOr of three index scans; SQLite: a multi-index OR). Partial: only
representatives act on behalf of someone, so most entries never enter it and appends do not pay
for it. Building it reads ``audit_entry`` once, inside the migration's transaction.

Plain SQLAlchemy only: this file must not change when the ``audit`` package does.

Revision ID: 0006_audit_principal
Revises: 0005_console
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_audit_principal"
down_revision = "0005_console"
branch_labels = None
depends_on = None

ACTED_FOR = "on_behalf_of IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_audit_entry_principal",
        "audit_entry",
        ["tenant_id", "on_behalf_of", "seq"],
        sqlite_where=sa.text(ACTED_FOR),
        postgresql_where=sa.text(ACTED_FOR),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_entry_principal", table_name="audit_entry")
