"""``kluis doctor``: every configuration problem in one go."""

from __future__ import annotations

import typer

from kluis.cli._common import JsonOpt, emit, fail, services
from kluis.doctor import all_problems


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


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
