"""What every CLI command shares: settings, services, the operator actor, output and errors."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from audit.schemas import Actor, TraceContext
from kluis.settings import Settings
from kluis.wiring import Services, build_services, utcnow
from vault.services import Context

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TenantOpt = Annotated[
    str, typer.Option("--tenant", "-t", help="The municipality's slug.", show_default=False)
]
BsnOpt = Annotated[
    str, typer.Option("--bsn", help="The resident's BSN (never printed or logged).", show_default=False)
]


class CliError(Exception):
    """A one-line reason for the operator; the command exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


@contextmanager
def services() -> Iterator[Services]:
    built = build_services(Settings())
    try:
        yield built
    finally:
        built.close()


def operator_account() -> str:
    """The operating-system account running the command, as the kernel knows it (its user id),
    not as the environment claims it: ``getpass.getuser`` believes ``$LOGNAME``/``$USER``, which
    anyone can set, and the operator's audit entries must not name whoever they like."""
    try:
        import pwd
    except ImportError:  # not POSIX: the claim is all there is
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # an id without an account (e.g. a container's arbitrary uid)
        return f"uid-{uid}"


def operator_context(trace: TraceContext | None = None) -> Context:
    return Context(
        actor=Actor(type="operator", id=f"cli:{operator_account()}"),
        trace=trace or TraceContext.new(),
        now=utcnow(),
    )


def emit(as_json: bool, payload: dict[str, Any] | list[Any], text: str | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write((text if text is not None else json.dumps(payload, indent=2, default=str)) + "\n")
