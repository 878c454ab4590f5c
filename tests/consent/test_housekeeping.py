"""Housekeeping (``kluis.housekeeping``): expired portal sessions, used assertions and revoked
tokens are deleted, live ones stay, a revoked token stays refused until it has expired, and a second
run finds nothing. On SQLite and PostgreSQL; the periodic task and the metrics on SQLite."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import select

from consent.models import RevokedToken, UsedAssertion
from consent.resource import Refusal
from consent.services import ConsentServices
from kluis.app import purge_periodically
from kluis.db import Database
from kluis.housekeeping import Purged, housekeep, purge_expired
from kluis.settings import Settings
from kluis.web.models import PortalSession
from kluis.web.sessions import SessionState, SessionStore, hash_id
from kluis.wiring import build_services, initialise, utcnow
from tests.conftest import Clock
from tests.consent.conftest import Town, client_ctx
from tests.consent.test_flow import approved_token, check

IDLE, MAX_AGE = timedelta(minutes=15), timedelta(hours=8)


def new_session(store: SessionStore, now: datetime) -> str:
    state = SessionState()
    state.data["lang"] = "nl"  # a change, so the session is saved
    raw_id = store.save(state, now)
    assert raw_id
    return hash_id(raw_id)


def used_assertion(db: Database, jti: str, expires_at: datetime) -> None:
    with db.session() as s:
        s.add(UsedAssertion(client_id="dpop:client-x", jti=jti, expires_at=expires_at))
        s.commit()


def stored(db: Database) -> tuple[set[str], set[str], int]:
    with db.read_session() as s:
        sessions = set(s.exec(select(PortalSession.id_hash)).all())
        assertions = set(s.exec(select(UsedAssertion.jti)).all())
        revoked = len(s.exec(select(RevokedToken.jti)).all())
    return sessions, assertions, revoked


def test_expired_rows_go_and_live_ones_stay(db: Database, consent: ConsentServices, clock: Clock, town: Town):
    store = SessionStore(db, idle=IDLE, max_age=MAX_AGE)
    client = town.clients["inkomen"]
    start = clock()
    idle_session = new_session(store, start)
    response = approved_token(db, consent, clock, town)
    with db.session() as s:
        consent.oauth.revoke(s, client_ctx(clock, client), client, {"token": [response.access_token]})
    used_assertion(db, "old", start + timedelta(minutes=1))
    used_assertion(db, "fresh", start + timedelta(hours=1))

    # Nothing has expired yet: nothing goes, and the revoked token stays refused as revoked.
    assert purge_expired(db, store, clock()) == Purged(0, 0, 0)
    refusal = check(db, consent, clock, response.access_token)
    assert isinstance(refusal, Refusal) and refusal.reason == "token_revoked"

    clock.advance(minutes=20)  # past the idle time, the assertion's and the access token's expiry
    live_session = new_session(store, clock())
    assert purge_expired(db, store, clock()) == Purged(portal_sessions=1, used_assertions=1, revoked_tokens=1)
    sessions, assertions, revoked = stored(db)
    assert sessions == {live_session} and idle_session not in sessions
    assert assertions == {"fresh"} and revoked == 0
    refusal = check(db, consent, clock, response.access_token)  # still refused, now for its age
    assert isinstance(refusal, Refusal) and refusal.reason == "token_expired"
    assert purge_expired(db, store, clock()) == Purged(0, 0, 0)  # idempotent

    clock.advance(hours=9)  # past the live session's absolute age, however recently it was used
    assert purge_expired(db, store, clock()).portal_sessions == 1
    assert stored(db)[0] == set()


def test_housekeep_counts_on_metrics_and_runs_periodically(tmp_path: Path):
    services = build_services(
        Settings(env="development", data_dir=tmp_path, housekeeping_interval_seconds=0.05)
    )
    initialise(services)
    try:
        now = utcnow()
        used_assertion(services.db, "a", now - timedelta(seconds=1))
        used_assertion(services.db, "b", now - timedelta(seconds=1))
        assert housekeep(services, now) == Purged(portal_sessions=0, used_assertions=2, revoked_tokens=0)
        value = services.metrics.registry.get_sample_value(
            "kluis_housekeeping_purged_rows_total", {"table": "used_assertions"}
        )
        assert value == 2

        used_assertion(services.db, "c", now - timedelta(seconds=1))

        async def until_purged() -> None:
            task = asyncio.create_task(purge_periodically(services))
            try:
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    if not stored(services.db)[1]:
                        return
                raise AssertionError("the periodic housekeeping did not run")
            finally:
                task.cancel()

        # In a thread of its own: a browser test in the same worker may hold this thread's loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, until_purged()).result()
        assert stored(services.db)[1] == set()
    finally:
        services.close()


def test_a_grant_whose_token_was_never_fetched_ends_once_its_request_has_expired(
    db: Database, consent: ConsentServices, clock: Clock, town: Town
):
    from tests.consent.conftest import audit_rows
    from tests.consent.test_flow import approve, ask, pending_id, poll

    client = town.clients["inkomen"]
    fetched = ask(db, consent, clock, client, requested_expiry=120)
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    clock.advance(seconds=3)
    poll(db, consent, clock, client, fetched)  # this one's token was fetched
    ask(db, consent, clock, client, requested_expiry=120)
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    # The department never comes back for the second. Within its lifetime nothing happens:
    with db.read_session() as r, db.session() as w:
        assert consent.requests.end_unfetched(r, w, clock()) == 0
    clock.advance(seconds=130)
    with db.read_session() as r, db.session() as w:
        assert consent.requests.end_unfetched(r, w, clock()) == 1
    with db.read_session() as r, db.session() as w:
        assert consent.requests.end_unfetched(r, w, clock()) == 0  # done once
    # A grant that ended on its own is left as it is (its status stays "expired", no entry today).
    ask(db, consent, clock, client, requested_expiry=120)
    approve(db, consent, clock, town.principal(), pending_id(db, consent, clock, town.principal()))
    clock.advance(days=400)
    with db.read_session() as r, db.session() as w:
        assert consent.requests.end_unfetched(r, w, clock()) == 0
    with db.read_session() as s:
        statuses = sorted(v.status for v in consent.requests.grants(s, town.principal(), clock()).items)
    assert statuses == ["expired", "expired", "revoked"]  # the third ended on its own, unrevoked
    ended = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:grant:revoked"]
    assert [(r["reason"], r["actor"]["type"]) for r in ended] == [("auth_req_id_expired", "system")]
