"""Verification and analysis as units of work, for the button, the API and the scheduled job.

Each job reads in a read-only unit of work (on SQLite it never holds the write lock while it walks
the log) and then stores its result in a short write unit of work.

The scheduled job runs in every node (a background task started with the app, every
``KLUIS_AUDIT_VERIFY_INTERVAL_MINUTES``); a node skips a tenant whose latest verification, by
whichever node, is recent, so the nodes together verify about once per interval. A scheduled run
walks the whole log when the latest full walk is older than ``KLUIS_AUDIT_FULL_VERIFY_INTERVAL_HOURS``
(or there is none, or the latest run found damage); otherwise it checks only what was added since
the latest run, from the signed checkpoint at or below its size (``audit.verify``, incremental):
the hourly cost follows the growth of the log, not its size.
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
    since: int = 0,
) -> VerificationView:
    """Verify the tenant's log and its checkpoints (all of it, or from a signed checkpoint at or
    below ``since``), keep and audit the result."""
    started = ctx.now
    with services.db.read_session() as session:
        result = console.verify(session, tenant_id, since=since)
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
    full_every = timedelta(hours=services.settings.audit_full_verify_interval_hours)
    for tenant_id in tenants:
        now = clock()
        with services.db.read_session() as session:
            latest = console.latest_verification(session, tenant_id)
            full = console.latest_full_verification(session, tenant_id)
        if latest is None or now - latest.started_at >= every * 0.9:
            since = scheduled_since(latest, full, full_every, now)
            ctx = system_context(now)
            verify(services, console, ctx, tenant_id, trigger="schedule", clock=clock, since=since)
        analyse(services, console, tenant_id, Period(now - timedelta(days=ANALYSED_DAYS), now), clock())


def scheduled_since(
    latest: VerificationView | None, full: VerificationView | None, full_every: timedelta, now: datetime
) -> int:
    """Where a scheduled run starts its walk: 0 (the whole log) unless the latest run found the log
    intact and the latest full walk is younger than ``full_every``; then at the latest run's size
    (``verify_log`` starts from the signed checkpoint at or below it). The whole log after any
    damage, so that the officer sees a complete picture again."""
    if latest is None or not latest.ok or full is None or not full_every:
        return 0
    if now - full.started_at >= full_every * 0.99:
        return 0
    return latest.tree_size


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
