"""Dependencies of the console pages: the console's parts and the logged-in privacy officer.

``OfficerDep`` is the only way a page learns whose trail it shows: the tenant of the officer's
session, never a tenant from the URL or a form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from kluis.api.deps import trace_of
from kluis.console.errors import OfficerLoginRequiredError
from kluis.console.schemas import ROLE, Officer
from kluis.console.services import ConsoleService
from kluis.web.deps import StateDep
from kluis.web.render import Templates
from vault.services import Context


@dataclass
class Console:
    """The console's own parts, built once in ``kluis.console.install``."""

    service: ConsoleService
    templates: Templates


def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def get_officer(state: StateDep) -> Officer:
    subject = state.data.get("subject")
    if state.data.get("role") != ROLE or state.tenant_id is None or not isinstance(subject, str):
        raise OfficerLoginRequiredError
    name = state.data.get("tenant_name")
    return Officer(state.tenant_id, subject, name if isinstance(name, str) else "")


def context(request: Request, officer: Officer, now: datetime) -> Context:
    """Who acts (the officer, for the audit log), in which trace, at what time."""
    trace = trace_of(request)
    return Context(actor=officer.actor, trace=trace, now=now)


ConsoleDep = Annotated[Console, Depends(get_console)]
OfficerDep = Annotated[Officer, Depends(get_officer)]
