"""Every router of the app, in one list (the one place that knows them all)."""

from __future__ import annotations

from fastapi import FastAPI

from kluis import console, web
from kluis.api import audit, health, imports, me, oauth, ops, records


def include_all(app: FastAPI) -> None:
    # Routes are matched in this order, one by one: the department data API, the hottest path,
    # comes first (matching it behind a hundred portal and console routes was measurable), its
    # hottest route on the application's own router (see records.install_read_route).
    records.install_read_route(app)
    app.include_router(records.router)
    app.include_router(health.router)
    app.include_router(ops.router)
    app.include_router(imports.router)
    app.include_router(oauth.router)
    app.include_router(me.router)
    app.include_router(audit.router)
    app.include_router(web.router)
    app.include_router(console.router)
