"""Operations: Prometheus metrics and structured JSON logs, both free of personal data.

Metric labels are route *templates* (``/api/v1/records/{category}``), methods and status codes,
tenant ids (a municipality's opaque id), audit event tags from ``audit.tags``, outcome codes and
grant states — never a path with values in it, never a client, resident, BSN, name or pseudonym.
Log records carry the request id and trace id; messages are written so they never need a BSN or a
name.

What feeds what (see docs/operations.md):

* HTTP requests and latency: ``MetricsMiddleware``, per request.
* ``kluis_audit_appends_total`` and ``kluis_audit_batch_entries``: the group committer
  (``kluis.group_commit``), once per committed batch — the department read hot path of this process.
* ``kluis_audit_verification_*{check="checkpoint"}``: every checkpoint signing in this process
  (``kluis.wiring.sign_checkpoint_audited``: the periodic signer and on-demand signing).
* At scrape time, from the database (``StoreQueries``, three small queries): committed log sizes,
  the latest full and incremental verification of each log (any node) and the grants per state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audit import tags
from audit.models import STATE
from audit.schemas import AuditEvent
from consent.models import Grant
from kluis.db import Database

current_request_id: ContextVar[str] = ContextVar("kluis_request_id", default="")
current_trace_id: ContextVar[str] = ContextVar("kluis_trace_id", default="")
log = logging.getLogger("kluis.metrics")

#: The audit event tags a label may carry; anything else is counted as "other".
KNOWN_TAGS = frozenset(
    value for name, value in vars(tags).items() if name.isupper() and isinstance(value, str)
)
GRANT_STATES = ("active", "revoked", "expired")


def event_label(event: AuditEvent) -> tuple[str, str, str]:
    """The labels an audit entry is counted under: tenant id, tag, outcome (``allow``/``deny`` for
    access decisions, else ``ok``/``error``). Never the data subject, actor or anything personal."""
    return (
        event.tenant,
        event.name if event.name in KNOWN_TAGS else "other",
        event.decision or event.status,
    )


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """What the database says at scrape time."""

    log_sizes: dict[str, int] = field(default_factory=dict)  # tenant -> committed entries
    # (tenant, "full" or "incremental") -> (ok, when) of the latest such verification run
    verifications: dict[tuple[str, str], tuple[bool, float]] = field(default_factory=dict)
    grants: dict[tuple[str, str], int] = field(default_factory=dict)  # (tenant, state) -> count


class StoreQueries:
    """The scrape-time queries, on the read engine: one row per tenant, or a small aggregate."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    def figures(self) -> StoreFigures:
        from kluis.console.models import ConsoleVerification  # the console imports the wiring

        now = self.clock()
        state = case(
            (col(Grant.revoked_at).is_not(None), "revoked"),
            (col(Grant.valid_until) <= now, "expired"),
            else_="active",
        )
        graded = select(col(Grant.tenant_id).label("tenant_id"), state.label("state")).subquery()
        verified = col(ConsoleVerification.started_at)
        kind = case((col(ConsoleVerification.since_size) == 0, "full"), else_="incremental")
        latest = (
            select(
                col(ConsoleVerification.tenant_id).label("tenant_id"),
                kind.label("kind"),
                func.max(verified).label("at"),
            )
            .group_by(col(ConsoleVerification.tenant_id), kind)
            .subquery()
        )
        figures = StoreFigures()
        with self.db.read_session() as session:
            for tenant_id, size in session.execute(select(STATE.c.tenant_id, STATE.c.size)):
                figures.log_sizes[tenant_id] = int(size)
            for tenant_id, run_kind, ok, finished in session.execute(
                select(
                    col(ConsoleVerification.tenant_id),
                    kind,
                    col(ConsoleVerification.ok),
                    col(ConsoleVerification.finished_at),
                ).join(
                    latest,
                    and_(
                        col(ConsoleVerification.tenant_id) == latest.c.tenant_id,
                        verified == latest.c.at,
                        kind == latest.c.kind,
                    ),
                )
            ):
                # Two runs of a kind that started at the same moment: a failure wins.
                earlier = figures.verifications.get((tenant_id, run_kind))
                passed = bool(ok) and (earlier is None or earlier[0])
                figures.verifications[(tenant_id, run_kind)] = (passed, _epoch(finished))
            for tenant_id, grant_state, count in session.execute(
                select(graded.c.tenant_id, graded.c.state, func.count()).group_by(
                    graded.c.tenant_id, graded.c.state
                )
            ):
                figures.grants[(tenant_id, grant_state)] = int(count)
        return figures


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Metrics:
    """The process's metrics, on their own registry (several apps in one test process stay apart)."""

    def __init__(self, store: StoreQueries | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kluis_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "kluis_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.audit_appends = Counter(
            "kluis_audit_appends",
            "Audit entries committed by this process's group committer (department record reads)",
            ["tenant", "event", "outcome"],
            registry=self.registry,
        )
        self.audit_batches = Histogram(
            "kluis_audit_batch_entries",
            "Entries per batch this process's group committer committed (one fsync each): how much "
            "the concurrent reads share a commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.purged_rows = Counter(
            "kluis_housekeeping_purged_rows",
            "Expired rows deleted by housekeeping (portal sessions, used assertions, revoked tokens)",
            ["table"],
            registry=self.registry,
        )
        self._store = store
        self._checks: dict[tuple[str, str], tuple[bool, float]] = {}
        self._checks_lock = threading.Lock()
        self.registry.register(_StateCollector(self))

    def audit_committed(self, events: Sequence[AuditEvent]) -> None:
        """Count one committed batch (called by the group committer, once per batch)."""
        for labels, count in Tally(event_label(e) for e in events).items():
            self.audit_appends.labels(*labels).inc(count)
        self.audit_batches.observe(len(events))

    def purged(self, counts: dict[str, int]) -> None:
        """Count the rows one housekeeping run deleted, by table (names, never values)."""
        for table, count in counts.items():
            self.purged_rows.labels(table).inc(count)

    def checked(self, tenant_id: str, check: str, *, ok: bool, at: datetime) -> None:
        """Keep the result of an integrity check of a tenant's log done in this process."""
        with self._checks_lock:
            self._checks[(tenant_id, check)] = (ok, at.timestamp())

    def checks(self) -> dict[tuple[str, str], tuple[bool, float]]:
        with self._checks_lock:
            return dict(self._checks)

    @property
    def has_store(self) -> bool:
        return self._store is not None

    def store_figures(self) -> StoreFigures | None:
        """The database's figures, or None when there is no store or it does not answer."""
        if self._store is None:
            return None
        try:
            return self._store.figures()
        except Exception as exc:  # noqa: BLE001 - /metrics must answer while the database does not
            log.warning("metrics: the database did not answer: %s", type(exc).__name__)
            return None


class _StateCollector(Collector):
    """Gauges and counters computed at scrape time: the in-process checks and the database figures."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "kluis_audit_verification_ok",
            "1 if the latest integrity check of the tenant's audit log passed, 0 if it found damage "
            '(check="checkpoint": the last checkpoint signing in this process; check="full": the '
            'latest walk of the whole log stored by any node; check="incremental": the latest walk '
            "from a signed checkpoint on, stored by any node)",
            labels=["tenant", "check"],
        )
        when = GaugeMetricFamily(
            "kluis_audit_verification_timestamp_seconds",
            "When that check finished (Unix time)",
            labels=["tenant", "check"],
        )
        checks = self.metrics.checks()
        figures = self.metrics.store_figures()
        if figures is not None:
            checks.update(figures.verifications)
        for (tenant, check), (passed, at) in sorted(checks.items()):
            ok.add_metric([tenant, check], 1.0 if passed else 0.0)
            when.add_metric([tenant, check], at)
        yield ok
        yield when
        if not self.metrics.has_store:
            return
        up = GaugeMetricFamily(
            "kluis_metrics_store_up", "1 if the database answered this scrape's queries, else 0"
        )
        up.add_metric([], 0.0 if figures is None else 1.0)
        yield up
        if figures is None:
            return
        entries = CounterMetricFamily(
            "kluis_audit_log_entries",
            "Entries committed to the tenant's audit log, by any process (the log's size)",
            labels=["tenant"],
        )
        for tenant, size in sorted(figures.log_sizes.items()):
            entries.add_metric([tenant], float(size))
        yield entries
        grants = GaugeMetricFamily(
            "kluis_consent_grants",
            "Consent grants by state (active, revoked, expired)",
            labels=["tenant", "state"],
        )
        tenants = sorted(set(figures.log_sizes) | {tenant for tenant, _ in figures.grants})
        for tenant in tenants:
            for grant_state in GRANT_STATES:
                grants.add_metric([tenant, grant_state], float(figures.grants.get((tenant, grant_state), 0)))
        yield grants


def route_template(scope: Scope) -> str:
    """The matched route's template; the router leaves the route in the scope (no second match)."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched")) if route is not None else "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled children, looked up once: ``labels()`` validates and hashes its arguments on
        # every call. Bounded by routes x methods x statuses (templates, never values).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.latency.labels(method, route),
            )
            if len(self._children) < 4096:  # methods are the client's choice: never unbounded
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        request_token = current_request_id.set(str(scope.get("kluis.request_id", "")))

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self._observe(scope["method"], route_template(scope), status, time.perf_counter() - start)
            current_request_id.reset(request_token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request and trace ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        trace_id = current_trace_id.get()
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type only: its message or traceback could carry personal data.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
