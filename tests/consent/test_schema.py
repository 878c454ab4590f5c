"""The consent tables Alembic makes (0003_consent) are the tables the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import audit.models  # noqa: F401 - every table on the metadata
import consent.models  # noqa: F401
import vault.models  # noqa: F401
from kluis.db import Database

TABLES = {
    "consent_client",
    "consent_purpose",
    "consent_request",
    "consent_grant",
    "consent_used_assertion",
    "consent_revoked_token",
}


def _table(diff: Any) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if name in TABLES:
            return str(name)
    return str(item[2]) if len(item) > 2 and isinstance(item[2], str) else None


def test_consent_schema_matches_the_models(db: Database) -> None:
    with db.write_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    ours = [d for d in diff if _table(d) in TABLES]
    assert ours == []
    with db.write_engine.connect() as conn:
        present = set(db.write_engine.dialect.get_table_names(conn))
    assert present >= TABLES
