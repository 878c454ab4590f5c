"""``kluis doctor``: every configuration problem in one go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kluis.backup import BackupError, backup_database, restore_database
from kluis.cli._common import JsonOpt, emit, fail, services
from kluis.doctor import all_problems
from kluis.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    to: Annotated[
        Path, typer.Option("--to", help="The new backup file (SQLite database file or pg_dump archive).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Take a consistent snapshot of the database while Kluis runs (keys are NOT included)."""
    settings = Settings()
    try:
        size = backup_database(settings.resolved_database_url, to)
    except BackupError as exc:
        fail(str(exc))
    emit(
        as_json,
        {"backup": str(to), "bytes": size},
        f"backup written to {to} ({size} bytes); back up the key file separately",
    )


def restore(
    source: Annotated[Path, typer.Option("--from", help="A backup made by `kluis backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the database with a backup (stop Kluis first); run `kluis audit verify` after."""
    if not yes and not typer.confirm("Replace the database with the backup?"):
        fail("not restored")
    try:
        restore_database(source, Settings().resolved_database_url)
    except BackupError as exc:
        fail(str(exc))
    emit(False, {}, "restored; now run `kluis audit verify --tenant …` for every municipality")


def doctor(as_json: JsonOpt = False) -> None:
    """Check the configuration (database, key provider, secrets, production rules) and print every problem."""
    with services() as svc:
        problems = all_problems(svc)
        mode = svc.settings.env
        emit(
            as_json,
            {"env": mode, "problems": problems},
            "\n".join(f"problem: {p}" for p in problems) if problems else f"no problems found ({mode})",
        )
    if problems:
        fail(f"{len(problems)} configuration problem(s)", code=1)
