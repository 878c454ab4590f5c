"""The privacy officer's console (functionaris gegevensbescherming): pages under ``/fg`` and the
findings API under ``/api/v1/audit/findings``.

``install(app, services)`` adds what the console needs besides its routers: the portal's session
middleware for ``/fg`` (the same database-backed sessions and CSRF tokens, bound to the
``privacy_officer`` role), its static files, its HTML error pages and the scheduled verification
job. ``router`` holds every route. Call ``install`` after ``kluis.web.install``.
"""

from __future__ import annotations

import base64
import logging
from importlib import resources

from fastapi import APIRouter, FastAPI

from kluis.console import api, jobs, login, pages
from kluis.console.deps import Console
from kluis.console.errors import ConsoleError, OfficerLoginRequiredError
from kluis.console.services import ConsoleService
from kluis.web import CachedStaticFiles
from kluis.web.error_pages import error_page_handler
from kluis.web.i18n import TIMEZONE
from kluis.web.login import new_sessions_admitted
from kluis.web.middleware import PortalSessionMiddleware
from kluis.web.render import Templates
from kluis.wiring import Services, utcnow

PREFIX = "/fg"
router = APIRouter()
for _module in (login, pages, api):
    router.include_router(_module.router)


def templates() -> Templates:
    """The portal's templates (the console's live in ``templates/console/``) with two more filters."""
    found = Templates()
    for env in found.envs.values():
        env.filters["moment"] = lambda value: value.astimezone(TIMEZONE).strftime("%Y-%m-%d %H:%M:%S")
        env.filters["b64"] = lambda value: base64.b64encode(value).decode("ascii")
    return found


log = logging.getLogger("kluis.console")


def install(app: FastAPI, services: Services) -> None:
    settings = services.settings
    service = ConsoleService(services.vault, services.purposes, services.signing)
    app.state.console = Console(service=service, templates=templates())
    static = resources.files("kluis.console").joinpath("static")
    app.mount(PREFIX + "/static", CachedStaticFiles(directory=str(static)), name="console-static")
    app.add_middleware(
        PortalSessionMiddleware,
        store=app.state.portal.store,
        secure=settings.public_base_url.startswith("https://") or settings.is_production,
        clock=utcnow,
        prefix=PREFIX,
        admit_new=new_sessions_admitted(services),
    )

    app.add_exception_handler(
        ConsoleError,
        error_page_handler(
            area="console",
            login_required=OfficerLoginRequiredError,
            login_url=login.LOGIN,
            template="console/error.html",
            log=log,
        ),
    )
    every = jobs.interval(settings)
    if every is not None:
        app.router.lifespan_context = jobs.with_scheduler(
            app.router.lifespan_context, services, service, every, utcnow
        )
