"""Backups of the database, separate from the key material.

SQLite: the online backup API copies a consistent snapshot while Kluis keeps serving. PostgreSQL:
``pg_dump --format=custom`` (restore with ``pg_restore``), run by the operator with the database's own
tools (see docs/operations.md). The key file or HSM is never part of a database backup: a stolen
backup alone opens nothing, and destroying retired KEK versions reaches erased residents' data in
old backups (docs/keys.md).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(Exception):
    pass


def sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise BackupError("the online backup command is for SQLite; use pg_dump for PostgreSQL")
    return Path(url.database)


def backup_sqlite(database_url: str, target: Path) -> int:
    """Copy a consistent snapshot to ``target`` (must not exist). Returns its size in bytes."""
    source_path = sqlite_path(database_url)
    if target.exists():
        raise BackupError(f"{target} exists already; choose a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination, pages=1024)
        finally:
            destination.close()
    finally:
        source.close()
    target.chmod(0o600)
    return target.stat().st_size


def restore_sqlite(backup: Path, database_url: str) -> None:
    """Replace the database with ``backup`` (Kluis must be stopped). The old file is kept aside."""
    target = sqlite_path(database_url)
    if not backup.exists():
        raise BackupError(f"{backup} does not exist")
    check = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError("the backup file fails SQLite's integrity check")
    finally:
        check.close()
    for suffix in ("-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    if target.exists():
        target.replace(target.with_suffix(target.suffix + ".before-restore"))
    source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()
    target.chmod(0o600)
