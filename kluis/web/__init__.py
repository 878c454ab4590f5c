"""The resident portal: server-rendered pages under ``/portaal`` (mobile-first, Dutch and English,
WCAG 2.1 AA, no JavaScript needed).

``install(app)`` adds what the pages need besides their routers (session middleware, static files,
HTML error pages, the OpenID Provider client); ``router`` holds every page.
"""

from __future__ import annotations

import logging
from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kluis.web import consent_pages, data_pages, history_pages, login, representative_pages
from kluis.web.deps import Portal
from kluis.web.error_pages import error_page_handler
from kluis.web.errors import LoginRequiredError, PortalError
from kluis.web.mandates import MandateService
from kluis.web.middleware import PortalSessionMiddleware
from kluis.web.render import Templates
from kluis.web.sessions import SessionStore
from kluis.wiring import Services, utcnow

router = APIRouter()
for _module in (login, data_pages, consent_pages, history_pages, representative_pages):
    router.include_router(_module.router)


class CachedStaticFiles(StaticFiles):
    """Static files may be cached (the app marks everything else ``no-store``)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("cache-control", "public, max-age=3600")
        return response


log = logging.getLogger("kluis.web")


def install(app: FastAPI, services: Services) -> None:
    settings = services.settings
    store = SessionStore.configured(services.db, settings)
    app.state.portal = Portal(templates=Templates(), store=store, mandates=MandateService(services.vault))
    app.state.oidc = login.oidc_client(settings)
    static = resources.files("kluis.web").joinpath("static")
    app.mount("/portaal/static", CachedStaticFiles(directory=str(static)), name="portal-static")
    app.add_middleware(
        PortalSessionMiddleware,
        store=store,
        secure=settings.public_base_url.startswith("https://") or settings.is_production,
        clock=utcnow,
        admit_new=login.new_sessions_admitted(services),
    )

    app.add_exception_handler(
        PortalError,
        error_page_handler(
            area="portal",
            login_required=LoginRequiredError,
            login_url=login.LOGIN,
            template="error.html",
            log=log,
        ),
    )
