"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text

from kluis.api.deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """The site root is the resident portal (the console is at /fg, the API at /api/v1)."""
    return RedirectResponse("/portaal", status_code=303)


@router.get("/health/live", summary="The process is up")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="The database and the key provider are reachable",
    responses={503: {"description": "Not ready"}},
)
def ready(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with services.db.read_session() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001 - readiness reports, never raises
        checks["database"] = "unavailable"
    problems = services.keys.check()
    checks["key_provider"] = "ok" if not problems else "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
