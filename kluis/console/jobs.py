"""Verification and analysis as units of work, for the button, the API and the scheduled job.

Each job reads in a read-only unit of work (on SQLite it never holds the write lock while it walks
the log) and then stores its result in a short write unit of work.

The scheduled job runs in every node (a background task started with the app, every
``KLUIS_AUDIT_VERIFY_INTERVAL_MINUTES``); a node skips a tenant whose latest verification, by
whichever node, is recent, so the nodes together verify about once per interval.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread

from kluis.console.anomalies import Period
from kluis.console.schemas import AnalysisResult, VerificationView
from kluis.console.services import ConsoleService, system_context
from kluis.settings import Settings
from kluis.wiring import Services
from vault.services import Context

log = logging.getLogger("kluis.console")
ANALYSED_DAYS = 2  # the scheduled job looks at yesterday and today (findings are merged by key)


def interval(settings: Settings) -> timedelta | None:
    """How often the scheduled job runs: the setting, else hourly in production and never in
    development; None when it is off."""
    minutes = settings.audit_verify_interval_minutes
    if minutes is None:
        minutes = 60 if settings.is_production else 0
    return timedelta(minutes=minutes) if minutes > 0 else None


def verify(
    services: Services,
    console: ConsoleService,
    ctx: Context,
    tenant_id: str,
    *,
    trigger: str,
    clock: Callable[[], datetime],
) -> VerificationView:
    """Verify the tenant's whole log and every checkpoint, keep and audit the result."""
    started = ctx.now
    with services.db.read_session() as session:
        result = console.verify(session, tenant_id)
    with services.db.session() as session:
        return console.store_verification(
            session,
            dataclasses.replace(ctx, now=clock()),
            tenant_id,
            result,
            trigger=trigger,
            started_at=started,
        )


def analyse(
    services: Services, console: ConsoleService, tenant_id: str, period: Period, now: datetime
) -> AnalysisResult:
    """Run the tenant's anomaly rules over ``period`` and store the findings."""
    with services.db.read_session() as session:
        findings = console.detect(session, tenant_id, period)
    with services.db.session() as session:
        return console.store_findings(session, tenant_id, findings, now)


def scheduled_run(
    services: Services, console: ConsoleService, every: timedelta, clock: Callable[[], datetime]
) -> None:
    """One round of the scheduled job over every tenant."""
    with services.db.read_session() as session:
        tenants = [t.id for t in services.vault.tenants(session)]
    for tenant_id in tenants:
        now = clock()
        with services.db.read_session() as session:
            latest = console.latest_verification(session, tenant_id)
        if latest is None or now - latest.started_at >= every * 0.9:
            verify(services, console, system_context(now), tenant_id, trigger="schedule", clock=clock)
        analyse(services, console, tenant_id, Period(now - timedelta(days=ANALYSED_DAYS), now), clock())


async def run_forever(
    services: Services, console: ConsoleService, every: timedelta, clock: Callable[[], datetime]
) -> None:
    """The background task: a round every ``every``, the first one after one interval."""
    while True:
        await anyio.sleep(every.total_seconds())
        try:
            await anyio.to_thread.run_sync(scheduled_run, services, console, every, clock)
        except Exception:  # the job must survive a bad round; the next one retries
            log.exception("scheduled audit verification failed")


def with_scheduler(
    lifespan: Callable[[Any], Any],
    services: Services,
    console: ConsoleService,
    every: timedelta,
    clock: Callable[[], datetime],
) -> Callable[[Any], Any]:
    """The app's lifespan, with the scheduled job running while the app runs."""

    @asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state, anyio.create_task_group() as group:
            group.start_soon(run_forever, services, console, every, clock)
            try:
                yield state
            finally:
                group.cancel_scope.cancel()

    return wrapped
