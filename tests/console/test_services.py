"""The console service against both databases: its tables match the migration, findings are merged
and reviewed per tenant, verification finds damage, the category filter pages correctly, and the
scheduled job verifies and analyses."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from audit import services as audit_log
from audit import tags
from audit.schemas import Actor, AuditQuery, TraceContext
from kluis.app import sign_pending
from kluis.console import jobs
from kluis.console import services as console_services
from kluis.console.anomalies import Finding, Period
from kluis.console.errors import InvalidSearchError, NotFoundError
from kluis.console.schemas import SearchFilters, VerificationView
from kluis.console.services import ConsoleService
from kluis.settings import Settings
from kluis.wiring import Services, build_services, initialise, utcnow
from tests.console.conftest import RESIDENT_A, RESIDENT_B, Municipality, build_municipality, emit, local, read
from vault.services import Context


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(env="development", data_dir=tmp_path, database_url=db_url))
    initialise(built)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def console(services: Services) -> ConsoleService:
    return ConsoleService(services.vault, services.purposes, services.signing)


@pytest.fixture
def towns(services: Services) -> tuple[Municipality, Municipality]:
    return (
        build_municipality(services, "gemeente-a", "Gemeente A", [RESIDENT_A]),
        build_municipality(services, "gemeente-b", "Gemeente B", [RESIDENT_B]),
    )


def officer_ctx(name: str = "fg") -> Context:
    return Context(actor=Actor(type="privacy_officer", id=name), trace=TraceContext.new(), now=utcnow())


def finding(key: str, sequences: tuple[int, ...]) -> Finding:
    now = utcnow()
    return Finding(
        rule="off_hours",
        key=key,
        message="%(who)s x",
        params={"who": "c"},
        first_at=now,
        last_at=now,
        count=len(sequences),
        sequences=sequences,
        client_id="c",
    )


def test_the_console_tables_match_the_migration(services: Services) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import kluis.console.models  # noqa: F401 - register the tables

    with services.db.write_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    ours = [d for d in diff if "console_" in repr(d)]
    assert ours == []


def test_findings_are_merged_by_key_reopened_by_new_entries_and_reviewed_per_tenant(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    a, b = towns
    with services.db.session() as session:
        first = console.store_findings(
            session, a.tenant.id, [finding("k1", (1, 2)), finding("k2", (3,))], utcnow()
        )
        again = console.store_findings(session, a.tenant.id, [finding("k1", (1, 2))], utcnow())
        console.store_findings(session, b.tenant.id, [finding("k1", (7,))], utcnow())
    assert (first.new, first.updated, again.new, again.updated) == (2, 0, 0, 0)
    with services.db.read_session() as session:
        listed, _ = console.findings(session, a.tenant.id)
        k1 = next(f for f in listed if f.sequences == (1, 2))
        b_ids = [f.id for f in console.findings(session, b.tenant.id)[0]]
    assert len(listed) == 2 and k1.status == "open"
    with services.db.session() as session:
        reviewed = console.review(session, officer_ctx(), a.tenant.id, k1.id, "  looked at it  ")
        assert reviewed.status == "reviewed" and reviewed.review_note == "looked at it"
        with pytest.raises(NotFoundError):
            console.review(session, officer_ctx(), a.tenant.id, b_ids[0], "not mine")
        with pytest.raises(InvalidSearchError):
            console.review(session, officer_ctx(), a.tenant.id, k1.id, "   ")
    with services.db.session() as session:
        # The same finding with an entry more: open again, the earlier review kept.
        result = console.store_findings(session, a.tenant.id, [finding("k1", (1, 2, 9))], utcnow())
    assert result.updated == 1
    with services.db.read_session() as session:
        again_k1 = console.finding(session, a.tenant.id, k1.id)
        assert again_k1.status == "open" and again_k1.sequences == (1, 2, 9) and again_k1.review_note
        with pytest.raises(NotFoundError):
            console.finding(session, b.tenant.id, k1.id)
        assert console.findings(session, a.tenant.id, status="reviewed")[0] == []


def test_findings_pages_with_a_cursor_and_refuses_a_forged_one(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    a, _ = towns
    with services.db.session() as session:
        console.store_findings(session, a.tenant.id, [finding(f"k{n}", (n,)) for n in range(5)], utcnow())
    seen: list[str] = []
    cursor = None
    with services.db.read_session() as session:
        while True:
            page, cursor = console.findings(session, a.tenant.id, cursor=cursor, limit=2)
            seen += [f.id for f in page]
            if cursor is None:
                break
        with pytest.raises(InvalidSearchError):
            console.findings(session, a.tenant.id, cursor="bm90LWEtY3Vyc29y")
    assert len(seen) == len(set(seen)) == 5


def test_verification_passes_on_an_intact_log_and_names_the_first_altered_entry(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    from tests.audit.factories import drop_triggers

    a, b = towns
    for day in range(3):
        read(services, a, local(day + 1, 10), subject=a.pseudonyms[RESIDENT_A])
    sign_pending(services)
    intact = jobs.verify(
        services, console, officer_ctx("checker"), a.tenant.id, trigger="button", clock=utcnow
    )
    assert intact.ok and intact.checkpoints >= 1 and intact.first_bad_seq is None
    with services.db.session() as session:
        drop_triggers(session)
        session.execute(
            text("UPDATE audit_entry SET leaf_bytes = :bytes WHERE tenant_id = :tenant AND seq = 5"),
            {"bytes": b'{"forged":true}', "tenant": a.tenant.id},
        )
        session.commit()
    damaged = jobs.verify(
        services, console, officer_ctx("checker"), a.tenant.id, trigger="button", clock=utcnow
    )
    assert not damaged.ok and damaged.first_bad_seq == 5 and damaged.problem and "entry 5" in damaged.problem
    assert jobs.verify(services, console, officer_ctx(), b.tenant.id, trigger="button", clock=utcnow).ok
    with services.db.read_session() as session:
        runs = console.verifications(session, a.tenant.id)
        latest = console.latest_verification(session, a.tenant.id)
    assert [r.ok for r in runs] == [False, True] and latest == runs[0]


def test_the_category_filter_pages_through_the_audit_search(
    services: Services,
    console: ConsoleService,
    towns: tuple[Municipality, Municipality],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = towns
    subject = a.pseudonyms[RESIDENT_A]
    for n in range(30):
        category = "schulden" if n % 3 == 0 else "inkomen"
        read(services, a, local(1, 9) + timedelta(minutes=n), subject=subject, category=category)
    monkeypatch.setattr(console_services, "SCAN_LIMIT", 7)  # force partial pages
    found: list[int] = []
    cursor: str | None = None
    with services.db.read_session() as session:
        for _ in range(40):
            page = console.search(
                session, a.tenant.id, SearchFilters(category="schulden"), cursor=cursor, limit=4
            )
            assert len(page.entries) <= 4
            found += [e.seq for e in page.entries]
            assert all("schulden" in e.event.categories for e in page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert len(found) == len(set(found)) == 10 and found == sorted(found, reverse=True)


def test_a_search_by_subject_is_audited_with_the_subject_and_an_unknown_bsn_finds_nothing(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    a, _ = towns
    with services.db.read_session() as session:
        subject = console.subject_of(session, a.tenant.id, RESIDENT_A)
        assert subject == a.pseudonyms[RESIDENT_A]
        assert console.subject_of(session, a.tenant.id, RESIDENT_B) is None  # B's resident, not A's
        with pytest.raises(InvalidSearchError):
            console.subject_of(session, a.tenant.id, "123456789")
    filters = SearchFilters(subject=subject, subject_given=True)
    with services.db.session() as session:
        console.log_search(session, officer_ctx("searcher"), a.tenant.id, filters, page=False)
    with services.db.read_session() as session:
        nobody = console.search(session, a.tenant.id, SearchFilters(subject=None, subject_given=True))
        logged = console.search(session, a.tenant.id, SearchFilters(decision="allow"), limit=500)
    assert nobody.entries == []
    searched = [e.event for e in logged.entries if e.event.name == tags.LOG_SEARCHED]
    assert searched and searched[0].data_subject_id == subject and searched[0].actor.id == "searcher"
    assert RESIDENT_A not in repr(searched[0])


def test_rules_default_to_the_registered_special_categories_and_saving_is_audited(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    a, b = towns
    with services.db.session() as session:
        special = {c.code for c in services.vault.categories(session, a.tenant.id) if c.special}
        rules = console.rules(session, a.tenant.id)
        assert set(rules.special_category.categories) == (special or {"jeugdzorg.dossier"})
        changed = rules.model_copy(
            update={"repeated_denials": rules.repeated_denials.model_copy(update={"threshold": 9})}
        )
        console.save_rules(session, officer_ctx("ruler"), a.tenant.id, changed)
    with services.db.read_session() as session:
        assert console.rules(session, a.tenant.id).repeated_denials.threshold == 9
        assert console.rules(session, b.tenant.id).repeated_denials.threshold == 5
        entries = console.search(session, a.tenant.id, SearchFilters(), limit=500).entries
    assert any(e.event.name == tags.RULES_CONFIGURED and e.event.actor.id == "ruler" for e in entries)


def test_the_scheduled_job_verifies_each_tenant_once_per_interval_and_analyses(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    a, b = towns
    night = local(0, 3)  # 03:00 today: outside office hours
    read(
        services,
        a,
        min(night, utcnow() - timedelta(minutes=1)),
        department="night",
        subject=a.pseudonyms[RESIDENT_A],
    )
    sign_pending(services)
    jobs.scheduled_run(services, console, timedelta(hours=1), utcnow)
    jobs.scheduled_run(services, console, timedelta(hours=1), utcnow)  # too soon: no second verification
    with services.db.read_session() as session:
        for town in (a, b):
            runs = console.verifications(session, town.tenant.id)
            assert (
                len(runs) == 1
                and runs[0].ok
                and runs[0].trigger == "schedule"
                and runs[0].actor == "kluis:console"
            )
        findings, _ = console.findings(session, a.tenant.id)
    assert [f.rule for f in findings] == ["off_hours"]


def test_the_scheduled_job_walks_what_was_added_and_the_whole_log_at_the_full_interval(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    a, _ = towns
    start = utcnow()
    hour = timedelta(hours=1)

    def round_at(offset: timedelta) -> VerificationView:
        jobs.scheduled_run(services, console, hour, lambda: start + offset)
        with services.db.read_session() as session:
            latest = console.latest_verification(session, a.tenant.id)
        assert latest is not None and latest.ok
        return latest

    def grow() -> None:
        read(services, a, utcnow(), department="jeugdzorg", subject=a.pseudonyms[RESIDENT_A])
        sign_pending(services)

    grow()
    first = round_at(timedelta(0))
    assert first.full
    grow()
    second = round_at(2 * hour)  # the full walk is recent: from the signed checkpoint at its size
    assert not second.full and second.since == first.tree_size and second.tree_size > first.tree_size
    grow()
    third = round_at(4 * hour)  # incremental again, from where the second run ended
    assert third.since == second.tree_size and third.tree_size > second.tree_size
    with services.db.read_session() as session:
        assert console.latest_full_verification(session, a.tenant.id) == first
        query = AuditQuery(name=tags.LOG_VERIFIED)
        verified = [e.event for e in audit_log.search(session, a.tenant.id, query, limit=50).entries]
    # The trail says where each walk started (newest first).
    assert [e.details["since"] for e in verified[:3]] == [second.tree_size, first.tree_size, 0]
    week = timedelta(hours=services.settings.audit_full_verify_interval_hours)
    assert round_at(week + 5 * hour).full  # the full walk is a week old: the whole log again


def test_a_scheduled_run_walks_the_whole_log_after_damage_or_without_a_recent_full_walk() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 4, 12, tzinfo=UTC)

    def run(ok: bool, size: int, age: timedelta, since: int = 0) -> VerificationView:
        return VerificationView(
            "v", "schedule", "kluis:console", now - age, now - age, ok, size, 1, None, None, since
        )

    week, hour = timedelta(days=7), timedelta(hours=1)
    full, latest = run(True, 100, 3 * hour), run(True, 120, hour, since=90)
    assert jobs.scheduled_since(latest, full, week, now) == 120
    assert jobs.scheduled_since(None, None, week, now) == 0  # never verified
    assert jobs.scheduled_since(latest, None, week, now) == 0  # no full walk yet
    assert jobs.scheduled_since(run(False, 120, hour, since=90), full, week, now) == 0  # damage
    assert jobs.scheduled_since(latest, run(True, 100, week), week, now) == 0  # the full walk is old
    assert jobs.scheduled_since(latest, full, timedelta(0), now) == 0  # full walks only (setting 0)


def test_the_scheduled_job_runs_in_the_apps_lifespan(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def inner(_app: object) -> AsyncIterator[None]:
        yield None

    wrapped = jobs.with_scheduler(inner, services, console, timedelta(milliseconds=50), utcnow)

    async def run() -> None:
        async with wrapped(object()):
            with anyio.fail_after(20):
                while True:
                    with services.db.read_session() as session:
                        if console.latest_verification(session, towns[1].tenant.id) is not None:
                            return
                    await anyio.sleep(0.05)

    # In a thread of its own: Playwright's sync API may hold an event loop in this one.
    failures: list[BaseException] = []

    def in_thread() -> None:
        try:
            anyio.run(run)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and failures == []


def test_the_schedule_is_hourly_in_production_off_in_development_unless_set() -> None:
    assert jobs.interval(Settings(env="development")) is None
    assert jobs.interval(Settings(env="production")) == timedelta(hours=1)
    assert jobs.interval(Settings(env="development", audit_verify_interval_minutes=5)) == timedelta(minutes=5)
    assert jobs.interval(Settings(env="production", audit_verify_interval_minutes=0)) is None


def test_analysis_of_a_period_uses_context_from_before_it(
    services: Services, console: ConsoleService, towns: tuple[Municipality, Municipality]
) -> None:
    """The grant was approved (with its expiry) long before the analysed day: still found."""
    a, _ = towns
    subject = a.pseudonyms[RESIDENT_A]
    emit(
        services,
        a.tenant.id,
        tags.REQUEST_APPROVED,
        local(60, 9),
        actor=Actor(type="resident", id=subject),
        client_id=a.clients["inkomen"],
        department="inkomen",
        data_subject_id=subject,
        categories=("inkomen",),
        grant_id="grant-old",
        decision="allow",
        details={"valid_until": local(1, 12).isoformat()},
    )
    read(services, a, local(1, 11, 58), subject=subject, grant="grant-old")
    day = Period(local(1, 0), local(0, 0))
    result = jobs.analyse(services, console, a.tenant.id, day, utcnow())
    with services.db.read_session() as session:
        findings, _ = console.findings(session, a.tenant.id)
    assert result.new == 1 and [f.rule for f in findings] == ["grant_end"]
