"""The package's shape: no sibling imports, the public surface, the schema the migration makes."""

from __future__ import annotations

import ast
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

import audit
from audit import models, services
from kluis.db import Database

PACKAGE = Path(audit.__file__).parent
SIBLINGS = {"vault", "consent", "connectors", "kluis", "migrations", "tests"}


def test_audit_imports_no_other_project_package() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & SIBLINGS, f"{path.name} imports {names}"


def test_the_service_surface_is_pinned() -> None:
    assert sorted(services.__all__) == [
        "append",
        "append_many",
        "checkpoints",
        "consistency_proof",
        "ensure_log",
        "export_csv",
        "export_jsonl",
        "get_entries",
        "get_entry",
        "inclusion_proof",
        "latest_checkpoint",
        "log_head",
        "pending_checkpoints",
        "root_at",
        "search",
        "sign_checkpoint",
        "sign_pending_checkpoints",
        "summary",
    ]
    assert all(callable(getattr(services, name)) for name in services.__all__)


def test_the_migration_makes_the_tables_the_models_describe(db: Database) -> None:
    audit_tables = MetaData()
    for table in (models.STATE, models.ENTRY, models.NODE, models.CHECKPOINT):
        table.to_metadata(audit_tables)
    only_audit = {"include_name": lambda name, kind, _parent: kind != "table" or name.startswith("audit_")}
    with db.write_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=only_audit), audit_tables)
        indexes = {i["name"] for i in inspect(conn).get_indexes("audit_entry")}
    assert diff == []
    assert indexes == {i.name for i in models.ENTRY.indexes}
