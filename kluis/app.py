"""``create_app()``: the web application's composition root."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from audit import services as audit_log
from audit.errors import CheckpointRefusedError, LogStateError
from kluis.api import openapi, problems
from kluis.api.fastlane import FastLaneApp
from kluis.api.middleware import KluisMiddleware
from kluis.observability import MetricsMiddleware
from kluis.settings import Settings
from kluis.wiring import Services, build_services, sign_checkpoint_audited, utcnow

OPENAPI_URL = "/api/v1/openapi.json"
log = logging.getLogger("kluis.app")


def sign_pending(services: Services) -> int:
    """Sign a checkpoint (with its audit entry) for every tenant whose log grew; returns how many
    were signed. Each tenant in its own transaction: a log that cannot be signed is logged (and
    shown on ``/metrics``) and does not hold up the others."""
    with services.db.read_session() as session:
        tenants = audit_log.pending_checkpoints(session)
    signed = 0
    for tenant_id in tenants:
        try:
            _, new = sign_checkpoint_audited(services, tenant_id, utcnow(), trigger="schedule")
        except (CheckpointRefusedError, LogStateError) as exc:
            log.warning("checkpoint of tenant %s refused: %s", tenant_id, type(exc).__name__)
            continue
        signed += new
    return signed


async def sign_checkpoints_periodically(services: Services) -> None:
    """Every few seconds, on every node: the audit lock makes concurrent signers agree."""
    while True:
        await asyncio.sleep(services.settings.checkpoint_interval_seconds)
        try:
            await run_in_threadpool(sign_pending, services)
        except Exception as exc:  # noqa: BLE001 - keep trying; readiness and verification report problems
            log.warning("checkpoint signing failed: %s", type(exc).__name__)


async def purge_periodically(services: Services) -> None:
    """Every hour or so, on every node: the deletes are idempotent (kluis/housekeeping.py)."""
    from kluis.housekeeping import housekeep

    while True:
        await asyncio.sleep(services.settings.housekeeping_interval_seconds)
        try:
            purged = await run_in_threadpool(housekeep, services, utcnow())
        except Exception as exc:  # noqa: BLE001 - keep trying; the next run deletes what this one left
            log.warning("housekeeping failed: %s", type(exc).__name__)
            continue
        if purged.total:
            log.info("housekeeping: %s", purged.as_dict())


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastLaneApp:
    settings = settings or Settings()
    services = services or build_services(settings)
    if settings.is_production:
        from kluis.doctor import all_problems

        found = all_problems(services)
        if found:
            services.close()
            raise SystemExit("kluis: refusing to start in production:\n- " + "\n- ".join(found))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (routes, schemas, models, metadata: a few hundred thousand
        # objects) lives as long as the process. Left in the collector's oldest generation, each
        # full collection walked all of it: ~110 ms with the event loop stopped, several times a
        # second under load, which was the whole p99 of the data API (docs/performance.md).
        gc.collect()
        gc.freeze()
        await services.audit_writer.start()  # SQLite's writer process: before the first read
        background: list[asyncio.Task[None]] = []
        if settings.checkpoint_interval_seconds > 0:
            background.append(asyncio.create_task(sign_checkpoints_periodically(services)))
        if settings.housekeeping_interval_seconds > 0:
            background.append(asyncio.create_task(purge_periodically(services)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await services.aclose()

    app = FastLaneApp(
        title="Kluis",
        version="1.0.0",
        summary="Citizen-controlled personal data vault: consent, department data API, audit log.",
        openapi_url=OPENAPI_URL,
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
        # Kluis exports its own Prometheus metrics and JSON logs and sets up no OpenTelemetry
        # provider; FastAPI's native telemetry would still ask the global providers on every
        # request whether it is on (~15 µs of the data API's read).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.state.settings = settings
    problems.install(app)
    from kluis.api import records, routers

    routers.include_all(app)
    openapi.install(app)
    from kluis import console, web

    web.install(app, services)
    console.install(app, services)
    app.state.metrics = services.metrics
    # Innermost first, as add_middleware nests them; the data API's fast lane gets the same ones.
    shell = [
        Middleware(MetricsMiddleware, metrics=app.state.metrics),
        Middleware(
            KluisMiddleware,
            max_body_bytes=settings.max_body_bytes,
            hsts=settings.public_base_url.startswith("https://") or settings.is_production,
        ),
    ]
    for cls, args, kwargs in shell:
        app.add_middleware(cls, *args, **kwargs)
    app.open_fast_lane(records.read_route(app), shell)
    return app
