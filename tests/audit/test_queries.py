"""The privacy officer's queries: filters, cursor pages, daily counts, CSV and JSON exports."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter
from datetime import timedelta

import pytest

from audit import services
from audit.errors import InvalidCursorError
from audit.schemas import Actor, AuditQuery
from kluis.db import Database
from tests.audit.factories import START, TENANT, event, fill
from tests.audit.test_append import OTHER

COUNT = 30
EVENTS = [event(i) for i in range(COUNT)]


@pytest.fixture
def filled(log_db: Database) -> Database:
    with log_db.session() as session:
        services.ensure_log(session, OTHER, "kluis/other")
        session.commit()
    fill(log_db, COUNT, batch=10)
    fill(log_db, 5, tenant=OTHER)  # never visible from TENANT
    return log_db


def everything(db: Database, query: AuditQuery, page: int = 7) -> list[int]:
    seqs: list[int] = []
    cursor = None
    with db.read_session() as session:
        while True:
            result = services.search(session, TENANT, query, limit=page, cursor=cursor)
            assert len(result.entries) <= page
            seqs.extend(e.seq for e in result.entries)
            if result.next_cursor is None:
                return seqs
            cursor = result.next_cursor


FILTERS = [
    (AuditQuery(), lambda e: True),
    (AuditQuery(department="jeugdzorg"), lambda e: e.department == "jeugdzorg"),
    (AuditQuery(client_id="client-1"), lambda e: e.client_id == "client-1"),
    (AuditQuery(data_subject_id="subject-2"), lambda e: e.data_subject_id == "subject-2"),
    (AuditQuery(name="consent:grant:revoked"), lambda e: e.name == "consent:grant:revoked"),
    (AuditQuery(decision="deny"), lambda e: e.decision == "deny"),
    (AuditQuery(purpose="jeugdhulp"), lambda e: e.processing_activity_id == "jeugdhulp"),
    (AuditQuery(trace_id=f"{8:032x}"), lambda e: e.trace.trace_id == f"{8:032x}"),
    (
        AuditQuery(since=START + timedelta(hours=5), until=START + timedelta(hours=12)),
        lambda e: START + timedelta(hours=5) <= e.start_time < START + timedelta(hours=12),
    ),
    (
        AuditQuery(department="inkomen", decision="allow", since=START + timedelta(hours=3)),
        lambda e: (
            e.department == "inkomen" and e.decision == "allow" and e.start_time >= START + timedelta(hours=3)
        ),
    ),
]


def test_filters_and_pages(filled: Database) -> None:
    for query, keep in FILTERS:
        expected = [i for i, e in enumerate(EVENTS) if keep(e)]
        assert expected, "a filter that matches nothing tests nothing"
        assert len(expected) < COUNT or query == AuditQuery()
        assert everything(filled, query) == expected[::-1], query
        assert everything(filled, dataclasses.replace(query, newest_first=False), page=4) == expected, query


def test_search_returns_what_the_leaves_say(filled: Database) -> None:
    with filled.read_session() as session:
        page = services.search(session, TENANT, AuditQuery(newest_first=False), limit=3)
    assert [e.seq for e in page.entries] == [0, 1, 2]
    assert page.entries[1].event.details == {"n": 1}
    assert page.entries[1].event.actor == EVENTS[1].actor


def test_involving_finds_subject_actor_and_principal(log_db: Database) -> None:
    representative = Actor(type="representative", id="rep-1", on_behalf_of="subject-9")
    with log_db.session() as session:
        services.append_many(
            session,
            [
                event(0, data_subject_id="subject-9"),
                event(1, actor=representative, data_subject_id="subject-9"),
                event(2, actor=Actor(type="resident", id="subject-9")),
                event(
                    3,
                    actor=Actor(type="representative", id="rep-2", on_behalf_of="subject-9"),
                    data_subject_id=None,
                ),
                event(4),
            ],
        )
        session.commit()
    assert everything(log_db, AuditQuery(involving="subject-9")) == [3, 2, 1, 0]
    assert everything(log_db, AuditQuery(actor_id="rep-1")) == [1]


def test_cursors_are_checked(filled: Database) -> None:
    with filled.read_session() as session:
        for bad in ["", "!!!", "MTIz", "a2x1aXMtYXVkaXQtY3Vyc29yOng"]:
            with pytest.raises(InvalidCursorError):
                services.search(session, TENANT, AuditQuery(), cursor=bad)


def test_daily_counts_per_department(filled: Database) -> None:
    with filled.read_session() as session:
        rows = services.summary(session, TENANT)
        narrowed = services.summary(session, TENANT, AuditQuery(decision="deny"))
    totals = Counter((e.start_time.date(), e.department) for e in EVENTS)
    denied = Counter((e.start_time.date(), e.department) for e in EVENTS if e.decision == "deny")
    assert {(r.day, r.department): r.total for r in rows} == dict(totals)
    assert {(r.day, r.department): r.denied for r in rows} == {k: denied.get(k, 0) for k in totals}
    assert all(r.allowed + r.denied == r.total for r in rows)
    assert sum(r.total for r in narrowed) == sum(denied.values())


def test_csv_and_json_exports(filled: Database) -> None:
    with filled.session() as session:
        services.append(
            session, event(COUNT, actor=Actor(type="client", id="=HYPERLINK(1)"), department="wmo")
        )
        session.commit()
    query = AuditQuery(department="wmo", newest_first=False)
    expected = [i for i, e in enumerate(EVENTS) if e.department == "wmo"] + [COUNT]
    out = io.StringIO()
    with filled.read_session() as session:
        assert services.export_csv(session, TENANT, query, out) == len(expected)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [int(r["seq"]) for r in rows] == expected
    assert rows[0]["start_time"] == "2026-03-03T15:02:00.000Z" and rows[0]["categories"] == "inkomen"
    assert rows[-1]["actor_id"] == "'=HYPERLINK(1)"  # a spreadsheet will not run it
    out = io.StringIO()
    with filled.read_session() as session:
        assert services.export_jsonl(session, TENANT, query, out) == len(expected)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["seq"] for d in docs] == expected
    assert docs[0]["actor"] == {"type": "client", "id": "client-2", "on_behalf_of": None}
    assert docs[-1]["actor"]["id"] == "=HYPERLINK(1)"  # JSON keeps the value as it is
