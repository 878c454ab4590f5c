"""``/metrics`` through the real app on loopback, on SQLite and PostgreSQL: audit appends counted
where they commit, verification status, grant counts per state — and no personal data in any label.
Plus the two failure paths: a database that does not answer, an observer of the group committer
that fails.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlmodel import col

from audit import leaf, tags
from audit import services as audit_log
from audit.schemas import Actor, AuditEvent, TraceContext
from consent.models import Grant
from kluis.console.models import ConsoleVerification
from kluis.console.services import ConsoleService, system_context
from kluis.db import Database
from kluis.group_commit import group_committer
from kluis.observability import GRANT_STATES, KNOWN_TAGS, Metrics, StoreFigures, StoreQueries
from kluis.wiring import build_services, initialise, utcnow
from tests.api.conftest import BSN, World, department_token, resident_client
from tests.e2e.conftest import development_settings, free_port, live_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(world: World) -> tuple[str, Samples]:
    response = httpx.get(world.base + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def read(world: World, token: str, category: str) -> httpx.Response:
    return httpx.get(f"{world.base}/api/v1/records/{category}", headers={"Authorization": f"Bearer {token}"})


BATCH_SERIES = ("kluis_audit_batch_entries_count", "kluis_audit_batch_entries_sum")


def log_size(world: World, tenant_id: str) -> int:
    with world.services.db.read_session() as s:
        return audit_log.log_head(s, tenant_id).tree_size


def test_audit_appends_are_counted_per_committed_read_and_the_log_size_is_the_database_s(
    world: World,
) -> None:
    _, before = scrape(world)
    token, _grant = department_token(world)
    assert read(world, token, "inkomen").status_code == 200
    assert read(world, token, "inkomen").status_code == 200
    assert read(world, token, "schulden").status_code == 403  # outside the grant: refused, and audited
    _, after = scrape(world)
    read_tag = {"tenant": world.tenant_id, "event": tags.RECORD_READ}
    for outcome, expected in (("allow", 2), ("deny", 1)):
        moved = value(after, "kluis_audit_appends_total", **read_tag, outcome=outcome) - value(
            before, "kluis_audit_appends_total", **read_tag, outcome=outcome
        )
        assert moved == expected, outcome
    # The same entries by batch: three reads one after the other, three batches of one.
    batches = {name: value(after, name) - value(before, name) for name in BATCH_SERIES}
    assert batches == {"kluis_audit_batch_entries_count": 3, "kluis_audit_batch_entries_sum": 3}
    # Every committed entry, whoever wrote it (consent events included), from the log state itself.
    entries = value(after, "kluis_audit_log_entries_total", tenant=world.tenant_id)
    assert entries == log_size(world, world.tenant_id)
    assert entries >= value(before, "kluis_audit_log_entries_total", tenant=world.tenant_id) + 3 + 2
    assert value(after, "kluis_audit_log_entries_total", tenant=world.quiet_tenant_id) == log_size(
        world, world.quiet_tenant_id
    )
    assert value(after, "kluis_metrics_store_up") == 1.0


def test_grant_counts_follow_approval_revocation_and_expiry(world: World) -> None:
    _, before = scrape(world)
    _, revoked = department_token(world)
    _, expired = department_token(world)
    _, middle = scrape(world)
    grants = {"tenant": world.tenant_id}
    assert value(middle, "kluis_consent_grants", **grants, state="active") == (
        value(before, "kluis_consent_grants", **grants, state="active") + 2
    )
    with resident_client(world) as me:
        assert me.post(f"/api/v1/me/grants/{revoked}/revoke").status_code in (200, 204)
    with world.services.db.session() as s:
        s.execute(
            update(Grant).where(col(Grant.id) == expired).values(valid_until=utcnow() - timedelta(seconds=1))
        )
        s.commit()
    _, after = scrape(world)
    for grant_state, moved in (("active", 0), ("revoked", 1), ("expired", 1)):
        assert value(after, "kluis_consent_grants", **grants, state=grant_state) == (
            value(before, "kluis_consent_grants", **grants, state=grant_state) + moved
        ), grant_state
    for grant_state in GRANT_STATES:  # a municipality without grants shows zeros, not gaps
        assert ("kluis_consent_grants", (("state", grant_state), ("tenant", world.quiet_tenant_id))) in after


def test_verification_status_from_checkpoint_signing_and_from_the_latest_full_verification(
    world: World,
) -> None:
    with resident_client(world) as me:
        started = time.time()
        first = me.get("/api/v1/audit/checkpoint")
        assert first.status_code == 200, first.text
        size = log_size(world, world.tenant_id)
        assert first.json()["tree_size"] == size  # the checkpoint covers its own audit entry
        with world.services.db.read_session() as s:
            [announced] = audit_log.get_entries(s, world.tenant_id, size - 1, size)
        assert leaf.parse(announced.leaf_bytes)["name"] == tags.CHECKPOINT_SIGNED
        again = me.get("/api/v1/audit/checkpoint")
        assert again.json() == first.json() and log_size(world, world.tenant_id) == size  # nothing new
    _, samples = scrape(world)
    checkpoint = {"tenant": world.tenant_id, "check": "checkpoint"}
    assert value(samples, "kluis_audit_verification_ok", **checkpoint) == 1.0
    assert (
        started - 1
        <= value(samples, "kluis_audit_verification_timestamp_seconds", **checkpoint)
        <= time.time()
    )

    console = ConsoleService(world.services.vault, world.services.purposes, world.services.signing)
    from kluis.console import jobs

    jobs.verify(
        world.services, console, system_context(utcnow()), world.tenant_id, trigger="button", clock=utcnow
    )
    _, samples = scrape(world)
    full = {"tenant": world.tenant_id, "check": "full"}
    assert value(samples, "kluis_audit_verification_ok", **full) == 1.0
    stamped = value(samples, "kluis_audit_verification_timestamp_seconds", **full)
    assert started - 1 <= stamped <= time.time()
    # A later run that found damage (stored by any node) turns the gauge to 0.
    later = utcnow() + timedelta(seconds=5)
    stored_run(world, later, ok=False, tree_size=1, checkpoints=0, first_bad_seq=0, problem="altered")
    _, samples = scrape(world)
    assert value(samples, "kluis_audit_verification_ok", **full) == 0.0
    assert value(samples, "kluis_audit_verification_timestamp_seconds", **full) == later.timestamp()
    assert (
        "kluis_audit_verification_ok",
        (("check", "full"), ("tenant", world.quiet_tenant_id)),
    ) not in samples
    # An incremental run (from a signed checkpoint) has a gauge of its own: the damage the last
    # full walk found stays visible beside it.
    latest = later + timedelta(seconds=5)
    stored_run(world, latest, ok=True, tree_size=2, checkpoints=1, since_size=1)
    _, samples = scrape(world)
    incremental = {"tenant": world.tenant_id, "check": "incremental"}
    assert value(samples, "kluis_audit_verification_ok", **incremental) == 1.0
    assert value(samples, "kluis_audit_verification_timestamp_seconds", **incremental) == latest.timestamp()
    assert value(samples, "kluis_audit_verification_ok", **full) == 0.0


def stored_run(world: World, at: datetime, **result: Any) -> None:
    """A scheduled verification run as another node would store it."""
    with world.services.db.session() as s:
        s.add(
            ConsoleVerification(
                id=secrets.token_hex(8),
                tenant_id=world.tenant_id,
                trigger="schedule",
                actor="kluis:console",
                started_at=at,
                finished_at=at,
                **result,
            )
        )
        s.commit()


def test_no_label_value_is_personal_data(world: World) -> None:
    token, grant_id = department_token(world)
    assert read(world, token, "inkomen").status_code == 200
    fields = httpx.get(
        f"{world.base}/api/v1/records/inkomen",
        params={"fields": "werkgever"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert fields.json()["data"] == {"werkgever": "Meetlat BV"}
    with resident_client(world) as me:
        me.get(f"/api/v1/audit/entries/{2**31}")  # a value in the path: the label is the template
        me.get("/api/v1/audit/checkpoint")
    body, samples = scrape(world)
    personal = [BSN, world.resident_id, world.pseudonym, world.client[0], grant_id, token, "Meetlat BV"]
    assert not [secret for secret in personal if secret in body]
    allowed: dict[str, set[str] | None] = {
        "tenant": {world.tenant_id, world.quiet_tenant_id},
        "event": set(KNOWN_TAGS) | {"other"},
        "outcome": {"allow", "deny", "ok", "error"},
        "state": set(GRANT_STATES),
        "check": {"checkpoint", "full", "incremental"},
        "method": {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"},
        "status": None,  # checked below
        "route": None,
        "le": None,
    }
    seen_events = set()
    for (_name, labels), _value in samples.items():
        for label, label_value in labels:
            assert label in allowed, label
            choices = allowed[label]
            if choices is not None:
                assert label_value in choices, (label, label_value)
            if label == "event":
                seen_events.add(label_value)
            if label == "status":
                assert label_value.isdigit()
            if label == "route":
                assert label_value == "unmatched" or label_value.startswith("/"), label_value
                assert not any(part.isdigit() for part in label_value.split("/")), label_value
    assert tags.RECORD_READ in seen_events
    routes = {dict(labels).get("route") for (name, labels) in samples if name == "kluis_http_requests_total"}
    assert "/api/v1/audit/entries/{seq}" in routes and "/api/v1/records/{category}" in routes


class _SilentStore(StoreQueries):
    def figures(self) -> StoreFigures:
        raise ConnectionError("the database is gone")


def test_metrics_answer_without_the_database_and_say_so(db: Database) -> None:
    metrics = Metrics(_SilentStore(db, utcnow))
    metrics.checked("t1", "checkpoint", ok=False, at=utcnow())
    body = generate_latest(metrics.registry).decode()
    assert "kluis_metrics_store_up 0.0" in body
    assert 'kluis_audit_verification_ok{check="checkpoint",tenant="t1"} 0.0' in body
    assert "kluis_consent_grants{" not in body and "kluis_audit_log_entries_total{" not in body


def test_the_group_committer_counts_each_batch_once_and_a_failing_observer_stops_nothing(
    db: Database,
) -> None:
    tenant = secrets.token_hex(16)
    with db.session() as s:
        audit_log.ensure_log(s, tenant, "kluis/test")
        s.commit()
    seen: list[int] = []

    def observe(events: Sequence[AuditEvent]) -> None:
        seen.append(len(events))
        raise RuntimeError("a broken metric")

    writer = group_committer(db, on_commit=observe)
    try:
        now = utcnow()
        event = AuditEvent(
            tenant=tenant,
            name=tags.RECORD_READ,
            actor=Actor(type="client", id="c"),
            trace=TraceContext.new(),
            start_time=now,
            end_time=now,
            decision="allow",
        )

        async def twice() -> list[int]:
            return [await writer.append(event), await writer.append(event)]

        assert asyncio.run(twice()) == [0, 1]  # the committer survived the observer
    finally:
        writer.close()
    assert seen == [1, 1]


def test_a_configured_metrics_token_is_required(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    settings = development_settings(tmp_path, free_port(), checkpoint_interval_seconds=0, metrics_token=token)
    services = build_services(settings)
    initialise(services)
    try:
        with live_server(settings, services) as base:
            missing = httpx.get(base + "/metrics")
            wrong = httpx.get(base + "/metrics", headers={"Authorization": "Bearer " + token[:-1] + "x"})
            basic = httpx.get(base + "/metrics", auth=("prometheus", token))
            right = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {token}"})
    finally:
        services.close()
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:kluis:problem:invalid-token"
        assert token not in refused.text and "kluis_http_requests" not in refused.text
    assert missing.headers["www-authenticate"] == 'Bearer realm="kluis"'
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert right.status_code == 200 and "kluis_http_requests_total" in right.text
