"""``create_app()``: the web application's composition root."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from kluis.api import openapi, problems
from kluis.api.fastlane import FastLaneApp
from kluis.api.middleware import KluisMiddleware
from kluis.checkpoint_process import sign_pending_here
from kluis.observability import MetricsMiddleware
from kluis.processes import forkserver
from kluis.settings import Settings
from kluis.wiring import Services, build_services, utcnow

OPENAPI_URL = "/api/v1/openapi.json"
log = logging.getLogger("kluis.app")


async def sign_checkpoints_periodically(services: Services) -> None:
    """Every few seconds, on every node: the audit lock makes concurrent signers agree. The signing
    runs in a helper process (``kluis.checkpoint_process``: in a thread it held the GIL long enough
    to be the data API's p99); its outcomes come back for ``/metrics``."""
    loop = asyncio.get_running_loop()
    signer: ProcessPoolExecutor | None = None
    try:
        while True:
            await asyncio.sleep(services.settings.checkpoint_interval_seconds)
            if signer is None:
                signer = ProcessPoolExecutor(max_workers=1, mp_context=forkserver())
            try:
                checks = await loop.run_in_executor(signer, sign_pending_here, services.settings)
            except Exception as exc:  # noqa: BLE001 - keep trying; readiness and verification report problems
                log.warning("checkpoint signing failed: %s", type(exc).__name__)
                if isinstance(exc, BrokenProcessPool):  # the helper died: a new one next time
                    signer.shutdown(wait=False)
                    signer = None
                continue
            for (tenant_id, check), (ok, at) in checks.items():
                services.metrics.checked(tenant_id, check, ok=ok, at=datetime.fromtimestamp(at, UTC))
    finally:
        if signer is not None:
            signer.shutdown(wait=True, cancel_futures=True)  # a signing under way finishes first


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
            log.info("housekeeping deleted expired rows: %s", purged.as_dict())


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
