"""Backups of the database, separate from the key material.

SQLite: the online backup API copies a consistent snapshot while Kluis keeps serving.
PostgreSQL: ``pg_dump --format=custom`` of the database the URL names (one consistent snapshot, also
while Kluis serves); ``pg_restore --clean --if-exists --no-owner`` puts it back in one transaction,
so a failed restore leaves the database as it was. Both are what ``kluis backup`` / ``kluis restore``
run. The key file or HSM is never part of a database backup: a stolen backup alone opens nothing,
and destroying retired KEK versions reaches erased residents' data in old backups (docs/keys.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

#: Tables every Kluis database has; an archive without them is not a Kluis backup.
_KLUIS_TABLES = ("alembic_version", "audit_entry", "tenant")


class BackupError(Exception):
    pass


def _backend(database_url: str) -> str:
    name = make_url(database_url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups are made of SQLite and PostgreSQL databases, not {name}")
    return name


def backup_database(database_url: str, target: Path) -> int:
    """Write a backup of the database to ``target`` (must not exist). Returns its size in bytes."""
    if _backend(database_url) == "sqlite":
        return backup_sqlite(database_url, target)
    return backup_postgres(database_url, target)


def restore_database(backup: Path, database_url: str) -> None:
    """Replace the database's contents with ``backup`` (made by ``backup_database``; Kluis stopped)."""
    if _backend(database_url) == "sqlite":
        restore_sqlite(backup, database_url)
    else:
        restore_postgres(backup, database_url)


# -- SQLite ----------------------------------------------------------------------------------------
def sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise BackupError("not a SQLite database file")
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


# -- PostgreSQL ------------------------------------------------------------------------------------
def _libpq(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL as the PostgreSQL tools take it (no ``+driver``, no password) and their environment:
    the password goes in ``PGPASSWORD``, never on a command line that ``ps`` shows."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or not url.database:
        raise BackupError("not a PostgreSQL database URL with a database name")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return conninfo, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (PostgreSQL client tools, the server's major version)")
    return found


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    """Run a PostgreSQL tool; its last line of complaint becomes the error (no password is in it)."""
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - fixed tool, argument list
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
    return done.stdout


def backup_postgres(database_url: str, target: Path) -> int:
    """``pg_dump --format=custom`` of the whole database into ``target`` (must not exist; mode 0600)."""
    conninfo, env = _libpq(database_url)
    pg_dump = _tool("pg_dump")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # created here, exclusively and 0600, so the dump is never readable by others
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise BackupError(f"{target} exists already; choose a new file") from None
    try:
        _run(
            [pg_dump, "--format=custom", "--no-password", f"--file={target}", f"--dbname={conninfo}"],
            env,
            "pg_dump",
        )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    target.chmod(0o600)
    return target.stat().st_size


def restore_postgres(backup: Path, database_url: str) -> None:
    """Restore a ``pg_dump`` archive into the database (stop Kluis first): every object in the
    archive is dropped if present and recreated, in one transaction (all or nothing)."""
    conninfo, env = _libpq(database_url)
    if not backup.exists():
        raise BackupError(f"{backup} does not exist")
    pg_restore = _tool("pg_restore")
    try:  # like SQLite's integrity check: read the archive's table of contents before touching anything
        listing = _run([pg_restore, "--list", str(backup)], env, "reading the archive")
    except BackupError:
        raise BackupError(f"{backup} is not a pg_dump archive (custom format)") from None
    # Entries read "<id>; <oid> <oid> TABLE DATA <schema> <table> <owner>".
    tables = {line.split()[-2] for line in listing.splitlines() if " TABLE DATA " in line}
    if not all(table in tables for table in _KLUIS_TABLES):
        raise BackupError(f"{backup} is not a backup of a Kluis database")
    _run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={conninfo}",
            str(backup),
        ],
        env,
        "pg_restore",
    )
