"""The resident's history and the subject search are index look-ups, not walks of the log.

``AuditQuery(involving=…)`` is an OR over data subject, actor and ``on_behalf_of``; each branch has an
index (``ix_audit_entry_principal`` since migration 0006). The plans are read after the statistics
a running deployment has: PostgreSQL's ``ANALYZE`` (what autovacuum does), and on SQLite what Kluis
itself gathers (``ANALYZE`` in ``Database.migrate``, ``PRAGMA optimize`` in ``Database.dispose``).
The statements explained are the ones ``audit.services.search`` executes, captured on the way out.

The log is shaped like a municipality's: many residents with a few entries each, some acting
themselves, some through a representative. (Not ``fill``: its events have four data subjects, a
log where each resident is a quarter of it, and there walking the log is the right plan.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event as sa_event
from sqlalchemy import inspect

from audit import models, services
from audit.schemas import Actor, AuditEvent, AuditQuery
from kluis.db import Database, alembic_config
from tests.audit.factories import TENANT, event

COUNT = 3010  # every resident ten entries, one of each kind
RESIDENTS = 301
RESIDENT = "resident-5"
INVOLVING = {"ix_audit_entry_subject", "ix_audit_entry_actor", "ix_audit_entry_principal"}


def _resident(i: int) -> str:
    return f"resident-{(i * 37) % RESIDENTS}"


def _event(i: int) -> AuditEvent:
    """Mostly department reads of a resident; every tenth entry the resident acts, two in ten a
    representative acts for them (one of those with no data subject: a login on their behalf)."""
    resident = _resident(i)
    if i % 10 == 0:
        return event(i, actor=Actor(type="resident", id=resident), data_subject_id=resident)
    if i % 10 in (1, 2):
        representative = Actor(type="representative", id=f"rep-{i % 40}", on_behalf_of=resident)
        return event(i, actor=representative, data_subject_id=resident if i % 10 == 1 else None)
    return event(i, data_subject_id=resident)


EVENTS = [_event(i) for i in range(COUNT)]


def _involves(e: AuditEvent, who: str) -> bool:
    return who in (e.data_subject_id, e.actor.id, e.actor.on_behalf_of)


def _fill(db: Database) -> None:
    for first in range(0, COUNT, 500):
        with db.session() as session:
            services.append_many(session, EVENTS[first : first + 500])
            session.commit()


def _pages(db: Database, query: AuditQuery, limit: int) -> list[int]:
    seqs: list[int] = []
    cursor = None
    with db.read_session() as session:
        while True:
            page = services.search(session, TENANT, query, limit=limit, cursor=cursor)
            seqs.extend(e.seq for e in page.entries)
            if page.next_cursor is None:
                return seqs
            cursor = page.next_cursor


def _sqlite_statistics(db: Database, table: str) -> list[str]:
    with db.read_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT idx FROM sqlite_stat1 WHERE tbl = ?", (table,)).all()
    return sorted(r.idx for r in rows if r.idx)


def _gather_statistics(db: Database) -> None:
    """What a running deployment has: autovacuum's ANALYZE; on SQLite, Kluis's own."""
    if db.is_sqlite:
        assert _sqlite_statistics(db, "audit_entry") == []  # the log was empty at `migrate`
        _pages(db, AuditQuery(involving=RESIDENT), limit=50)  # the planner looks at the indexes
        db.dispose()  # PRAGMA optimize on each connection as it closes
        assert "ix_audit_entry_principal" in _sqlite_statistics(db, "audit_entry")
    else:
        with db.write_engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE audit_entry")


@pytest.fixture
def resident_log(log_db: Database) -> Database:
    _fill(log_db)
    _gather_statistics(log_db)
    return log_db


def _statement(db: Database, query: AuditQuery, cursor: str | None) -> tuple[str, Any]:
    """The SELECT that ``search`` executes, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM audit_entry" in statement:
            seen.append((statement, parameters))

    sa_event.listen(db.read_engine, "before_cursor_execute", capture)
    try:
        with db.read_session() as session:
            services.search(session, TENANT, query, limit=20, cursor=cursor)
    finally:
        sa_event.remove(db.read_engine, "before_cursor_execute", capture)
    assert len(seen) == 1
    return seen[0]


def _plan(db: Database, query: AuditQuery, cursor: str | None = None) -> tuple[list[str], set[str]]:
    """The plan of ``search(query)``: its steps, and the indexes it reads audit_entry through."""
    statement, parameters = _statement(db, query, cursor)
    with db.read_engine.connect() as conn:
        if db.is_sqlite:
            details = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            used = {m[1] for d in details if (m := re.match(r"SEARCH audit_entry USING INDEX (\w+)", d))}
            return details, used
        document = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
    nodes: list[dict[str, Any]] = []
    pending = [(json.loads(document) if isinstance(document, str) else document)[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    steps = [f"{n['Node Type']} {n.get('Index Name', '')}".strip() for n in nodes]
    return steps, {n["Index Name"] for n in nodes if "Index Name" in n}


def _assert_no_walk(steps: list[str]) -> None:
    # SQLite: "SCAN audit_entry" is a full scan; a SEARCH on the primary key with only the tenant
    # (or the tenant and a range of seq) walks the tenant's log. PostgreSQL: a sequential scan.
    assert not [s for s in steps if s.startswith(("SCAN audit_entry", "Seq Scan"))], steps
    assert not [s for s in steps if "sqlite_autoindex_audit_entry" in s], steps


def test_the_involving_search_reads_three_indexes(resident_log: Database) -> None:
    query = AuditQuery(involving=RESIDENT)
    with resident_log.read_session() as session:  # a second page adds "seq < ?"
        cursor = services.search(session, TENANT, query, limit=3).next_cursor
    assert cursor is not None
    for q, c in [
        (query, None),
        (query, cursor),
        (AuditQuery(involving=RESIDENT, newest_first=False), None),
        (AuditQuery(involving="rep-7"), None),  # someone who only ever acted
    ]:
        steps, used = _plan(resident_log, q, c)
        _assert_no_walk(steps)
        assert used == INVOLVING, steps


def test_the_involving_search_still_finds_what_it_found(resident_log: Database) -> None:
    for who in (RESIDENT, "resident-0", "rep-7", "nobody"):
        expected = [i for i, e in enumerate(EVENTS) if _involves(e, who)]
        assert _pages(resident_log, AuditQuery(involving=who), limit=7) == expected[::-1], who
        oldest_first = AuditQuery(involving=who, newest_first=False)
        assert _pages(resident_log, oldest_first, limit=4) == expected, who
    # every branch contributes: the resident acting, a representative for them, subject only
    kinds = {(e.actor.type, e.data_subject_id is None) for e in EVENTS if _involves(e, RESIDENT)}
    assert kinds == {
        ("resident", False),
        ("representative", False),
        ("representative", True),
        ("client", False),
    }


def test_the_subject_search_reads_its_index(resident_log: Database) -> None:
    steps, used = _plan(resident_log, AuditQuery(data_subject_id=RESIDENT))
    _assert_no_walk(steps)
    assert used == {"ix_audit_entry_subject"}, steps


def test_the_principal_index_is_partial_in_the_model_and_the_migration(db: Database) -> None:
    # compare_metadata (test_package.py) compares an index's columns, not its WHERE clause.
    def normal(where: object) -> str:
        return re.sub(r"[()\s]+", " ", str(where)).strip().lower()

    (index,) = [i for i in models.ENTRY.indexes if i.name == "ix_audit_entry_principal"]
    assert [c.name for c in index.columns] == ["tenant_id", "on_behalf_of", "seq"]
    dialect = db.write_engine.dialect.name
    with db.write_engine.connect() as conn:
        (reflected,) = [i for i in inspect(conn).get_indexes("audit_entry") if i["name"] == index.name]
    assert reflected["column_names"] == ["tenant_id", "on_behalf_of", "seq"]
    where = reflected.get("dialect_options", {})[f"{dialect}_where"]
    assert normal(where) == normal(index.dialect_options[dialect]["where"]) == "on_behalf_of is not null"


def test_sqlite_statistics_are_gathered_at_migrate_when_there_are_none(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        db.migrate()
        with db.session() as session:
            services.ensure_log(session, TENANT, "kluis/gemeente-test")
            session.commit()
        _fill(db)
        with db.write_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE sqlite_stat1")  # a database from before Kluis did this
        db.migrate()
        assert "ix_audit_entry_subject" in _sqlite_statistics(db, "audit_entry")
        _, used = _plan(db, AuditQuery(involving=RESIDENT))
        assert used == INVOLVING
    finally:
        db.dispose()


def test_the_migration_goes_down_and_up_again(db: Database) -> None:
    def indexes() -> set[str]:
        with db.write_engine.connect() as conn:
            return {i["name"] for i in inspect(conn).get_indexes("audit_entry") if i["name"]}

    def alembic(step: Any, revision: str) -> None:
        with db.write_engine.begin() as conn:
            config = alembic_config(db.url)
            config.attributes["connection"] = conn
            step(config, revision)

    assert "ix_audit_entry_principal" in indexes()
    alembic(command.downgrade, "0005_console")
    assert indexes() == {i.name for i in models.ENTRY.indexes} - {"ix_audit_entry_principal"}
    alembic(command.upgrade, "head")
    assert indexes() == {i.name for i in models.ENTRY.indexes}
