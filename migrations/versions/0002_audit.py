"""The audit log: entries, completed subtree nodes, per-tenant log state, signed checkpoints.

Entries, nodes and checkpoints are append-only: triggers refuse UPDATE and DELETE (and, on
PostgreSQL, TRUNCATE, which skips row triggers). The log-state row may change, but never shrink or
change origin, and never be deleted. A database administrator can drop the triggers; verification
(``kluis audit verify``) and signed checkpoints kept outside the database catch what they then do.

Plain SQLAlchemy only: this file must not change when the ``audit`` package does.

Revision ID: 0002_audit
Revises: 0001_vault
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_audit"
down_revision = "0001_vault"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_entry", "audit_node", "audit_checkpoint")


def _tenant() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant_id", sa.String(64), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "audit_log_state",
        _tenant(),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "audit_entry",
        _tenant(),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("leaf_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("decision", sa.String(8), nullable=True),
        sa.Column("actor_type", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(128), nullable=False),
        sa.Column("on_behalf_of", sa.String(128), nullable=True),
        sa.Column("data_subject_id", sa.String(128), nullable=True),
        sa.Column("department", sa.String(128), nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("purpose", sa.String(128), nullable=True),
        sa.Column("grant_id", sa.String(128), nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_audit_entry_time", "audit_entry", ["tenant_id", "time_ms"])
    op.create_index("ix_audit_entry_subject", "audit_entry", ["tenant_id", "data_subject_id"])
    op.create_index("ix_audit_entry_actor", "audit_entry", ["tenant_id", "actor_id"])
    op.create_index("ix_audit_entry_department", "audit_entry", ["tenant_id", "department", "time_ms"])
    op.create_index("ix_audit_entry_trace", "audit_entry", ["tenant_id", "trace_id"])
    op.create_table(
        "audit_node",
        _tenant(),
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_checkpoint",
        _tenant(),
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("kid", sa.String(128), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for name in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {name}_no_{action.lower()} BEFORE {action} ON {name} "
                f"BEGIN SELECT RAISE(ABORT, '{name} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER audit_log_state_no_delete BEFORE DELETE ON audit_log_state "
        "BEGIN SELECT RAISE(ABORT, 'audit_log_state rows are never deleted'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_log_state_forward_only BEFORE UPDATE ON audit_log_state "
        "WHEN NEW.size < OLD.size OR NEW.origin IS NOT OLD.origin OR NEW.tenant_id IS NOT OLD.tenant_id "
        "BEGIN SELECT RAISE(ABORT, 'audit_log_state only grows'); END"
    )


def _postgresql_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION audit_state_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.size < OLD.size OR NEW.origin IS DISTINCT FROM OLD.origin
               OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
                RAISE EXCEPTION 'audit_log_state only grows' USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    for name in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON {name} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
        )
    op.execute(
        "CREATE TRIGGER audit_log_state_no_delete BEFORE DELETE ON audit_log_state "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_state_no_truncate BEFORE TRUNCATE ON audit_log_state "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_state_forward_only BEFORE UPDATE ON audit_log_state "
        "FOR EACH ROW EXECUTE FUNCTION audit_state_forward_only()"
    )


def downgrade() -> None:
    # Dropping a table drops its triggers; the functions go last.
    for name in ("audit_checkpoint", "audit_node", "audit_entry", "audit_log_state"):
        op.drop_table(name)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS audit_state_forward_only()")
