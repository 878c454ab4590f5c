"""Every router of the app, in one list (the one place that knows them all)."""

from __future__ import annotations

from fastapi import FastAPI

from kluis.api import health, ops, records


def include_all(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(ops.router)
    app.include_router(records.router)
