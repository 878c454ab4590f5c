"""The group committer of the read path (kluis/group_commit.py): concurrent appends share commits,
every waiter learns its own sequence number only once its entry is durable, a failed batch fails
every waiter in it and writes nothing; on SQLite, in the writer process, a busy database never blocks
the event loop and a writer process that dies fails its batch, never more."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from audit import services as audit_log
from audit.errors import UnknownLogError
from audit.schemas import Actor, AuditEvent, TraceContext
from kluis import audit_process
from kluis.db import Database
from kluis.group_commit import (
    AuditGroupCommitter,
    AuditWriterClosedError,
    AuditWriterGoneError,
    ProcessGroupCommitter,
    group_committer,
)
from kluis.wiring import utcnow
from tests.audit.factories import TENANT, assert_head_is_the_rfc_root, event


@pytest.fixture
def committer(log_db: Database) -> Iterator[AuditGroupCommitter]:
    writer = group_committer(log_db)
    try:
        yield writer
    finally:
        writer.close()


@pytest.fixture
def other_writer(log_db: Database) -> Iterator[sqlite3.Connection]:
    """A second connection to the SQLite database, to hold its write lock as another writer would."""
    path = log_db.write_engine.url.database
    assert path is not None
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        yield connection
    finally:
        connection.close()


def stored_seqs(db: Database) -> list[int]:
    with db.read_session() as session:
        rows = session.connection().execute(
            text("SELECT seq FROM audit_entry WHERE tenant_id = :t ORDER BY seq"), {"t": TENANT}
        )
        return [int(r[0]) for r in rows]


def test_concurrent_appends_are_dense_and_each_waiter_gets_its_own_durable_entry(
    log_db: Database, committer: AuditGroupCommitter
) -> None:
    seen_on_return: list[bool] = []

    async def one(i: int) -> int:
        seq = await committer.append(event(i))
        # Once append returns, the entry is committed: another connection sees it.
        seen_on_return.append(seq in stored_seqs(log_db))
        return seq

    async def main() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(40))))

    seqs = asyncio.run(main())
    assert sorted(seqs) == list(range(40))
    assert stored_seqs(log_db) == list(range(40))
    assert all(seen_on_return)
    with log_db.read_session() as session:
        assert audit_log.log_head(session, TENANT).tree_size == 40


def test_a_failed_batch_fails_every_waiter_in_it_and_writes_nothing(
    log_db: Database, committer: AuditGroupCommitter
) -> None:
    async def main() -> tuple[list[BaseException | int], int]:
        # Queued in the same loop iteration: one batch. The unknown tenant has no log.
        results = await asyncio.gather(
            committer.append(event(1)),
            committer.append(event(2, tenant="0" * 32)),
            committer.append(event(3)),
            return_exceptions=True,
        )
        after = await committer.append(event(4))  # the committer still works afterwards
        return list(results), after

    results, after = asyncio.run(main())
    assert all(isinstance(r, UnknownLogError) for r in results), results
    assert after == 0
    assert stored_seqs(log_db) == [0]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_busy_database_waits_in_the_writer_process_and_the_loop_keeps_running(
    log_db: Database, committer: AuditGroupCommitter, other_writer: sqlite3.Connection
) -> None:
    holder = other_writer
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database

    async def main() -> tuple[int, int]:
        ticks = 0
        append = asyncio.ensure_future(committer.append(event(1)))
        for _ in range(20):  # the event loop is not blocked while the lock is held
            await asyncio.sleep(0.01)
            ticks += 1
        assert not append.done()
        holder.execute("ROLLBACK")
        return await asyncio.wait_for(append, 30), ticks

    seq, ticks = asyncio.run(main())
    assert (seq, ticks) == (0, 20)
    assert stored_seqs(log_db) == [0]


def test_close_finishes_the_commit_in_flight(log_db: Database) -> None:
    writer = group_committer(log_db)

    async def main() -> tuple[list[int], list[int]]:
        pending = [asyncio.ensure_future(writer.append(event(i))) for i in range(5)]
        await asyncio.sleep(0)  # the five queue their entries
        await asyncio.sleep(0)  # the batch has started; its commit may still be running
        await writer.aclose()  # as at shutdown: returns once the batch is durable
        durable_at_close = stored_seqs(log_db)
        return durable_at_close, list(await asyncio.gather(*pending))

    durable_at_close, seqs = asyncio.run(main())
    assert durable_at_close == list(range(5))
    assert sorted(seqs) == list(range(5))


def test_after_close_entries_are_refused_and_nothing_is_reopened(log_db: Database) -> None:
    writer = group_committer(log_db)

    async def main() -> BaseException | int:
        await writer.append(event(0))
        writer.close()
        results = await asyncio.gather(writer.append(event(1)), return_exceptions=True)
        return results[0]

    late = asyncio.run(main())
    assert isinstance(late, AuditWriterClosedError)
    assert stored_seqs(log_db) == [0]
    if isinstance(writer, ProcessGroupCommitter):  # SQLite: no writer process started again
        assert writer._process is None and writer._channel is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_writer_process_that_dies_fails_its_batch_and_the_next_batch_gets_a_new_one(
    log_db: Database, committer: ProcessGroupCommitter, other_writer: sqlite3.Connection
) -> None:
    assert isinstance(committer, ProcessGroupCommitter)  # SQLite
    holder = other_writer

    async def main() -> tuple[BaseException | int, int, int]:
        first = await committer.append(event(0))
        process = committer._process
        assert process is not None and process.is_alive()
        holder.execute("BEGIN IMMEDIATE")  # the next batch waits in the process for the lock...
        waiting = asyncio.ensure_future(committer.append(event(1)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        process.kill()  # ...and the process dies meanwhile: the batch fails, nothing is written
        [lost] = await asyncio.gather(waiting, return_exceptions=True)
        holder.execute("ROLLBACK")
        assert committer._process is None
        after = await committer.append(event(2))  # a new process for the next batch
        assert committer._process is not None and committer._process is not process
        return lost, first, after

    lost, first, after = asyncio.run(main())
    assert isinstance(lost, AuditWriterGoneError)
    assert (first, after) == (0, 1)
    assert stored_seqs(log_db) == [0, 1]
    assert_head_is_the_rfc_root(log_db)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_writer_process_starts_with_the_server_not_with_its_first_read(
    log_db: Database, committer: ProcessGroupCommitter
) -> None:
    assert isinstance(committer, ProcessGroupCommitter)  # SQLite

    async def main() -> tuple[bool, int, bool]:
        await committer.start()  # the server's start-up (kluis.app's lifespan)
        started = committer._process
        alive = started is not None and started.is_alive()
        await committer.start()  # a second call changes nothing
        seq = await committer.append(event(0))
        return alive, seq, committer._process is started

    assert asyncio.run(main()) == (True, 0, True)
    assert stored_seqs(log_db) == [0]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_batch_that_cannot_be_handed_over_fails_alone_and_the_process_stays(
    log_db: Database, committer: ProcessGroupCommitter
) -> None:
    assert isinstance(committer, ProcessGroupCommitter)  # SQLite

    async def main() -> tuple[list[BaseException | int], int, bool]:
        await committer.start()
        process = committer._process
        # A value the channel cannot carry (the event is validated in the process, after it).
        results = await asyncio.gather(
            committer.append(event(0)),
            committer.append(event(1, details={"n": lambda: 1})),
            return_exceptions=True,
        )
        after = await committer.append(event(2))
        return list(results), after, committer._process is process

    results, after, same_process = asyncio.run(main())
    assert all(isinstance(r, Exception) and not isinstance(r, AuditWriterGoneError) for r in results)
    assert (after, same_process) == (0, True)
    assert stored_seqs(log_db) == [0]


# -- PostgreSQL: a batch as one statement when the log's head is known ------------------------------
def _committed_many(
    db: Database, batches: list[list[int]], heads: dict[str, audit_log.Head], tenant_of: Any = None
) -> list[list[int]]:
    """``commit_many_async`` of each batch of event numbers, in turn, on one autocommit connection."""
    import psycopg

    def events(numbers: list[int]) -> list[AuditEvent]:
        return [event(i, tenant=tenant_of(i)) if tenant_of else event(i) for i in numbers]

    async def main() -> list[list[int]]:
        connection = await db.connect_async(autocommit=True)
        try:
            done = []
            for numbers in batches:
                appended = await audit_log.commit_many_async(
                    connection,
                    events(numbers),
                    integrity_error=psycopg.IntegrityError,
                    heads=heads,
                )
                done.append([a.seq for a in appended])
            return done
        finally:
            await connection.close()

    return asyncio.run(main())


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_known_head_makes_a_batch_one_statement_that_lands_only_on_that_head(log_db: Database) -> None:
    heads: dict[str, audit_log.Head] = {}
    statements: list[str] = []
    import psycopg

    original = psycopg.AsyncConnection.execute

    async def traced(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query).split()[0])
        return await original(self, query, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg.AsyncConnection, "execute", traced)
        # First batch: head unknown, the locked path (through a cursor); then known: one statement.
        assert _committed_many(log_db, [[0, 1, 2], [3, 4], [5]], heads) == [[0, 1, 2], [3, 4], [5]]
    assert statements == ["WITH", "WITH"]
    assert heads[TENANT][0] == 6
    assert_head_is_the_rfc_root(log_db)
    # Another writer moves the log on: the remembered head is stale, the guarded statement writes
    # nothing, and the batch lands after the other writer's entries, through the locked path.
    with log_db.session() as session:
        audit_log.append_many(session, [event(i) for i in range(6, 9)])
        session.commit()
    assert _committed_many(log_db, [[9, 10], [11]], heads) == [[9, 10], [11]]
    assert heads[TENANT][0] == 12
    assert_head_is_the_rfc_root(log_db)
    # A head of the right size but another frontier (a log restored and grown again) is not trusted.
    size, frontier = heads[TENANT]
    heads[TENANT] = (size, bytes(len(frontier)))
    assert _committed_many(log_db, [[12]], heads) == [[12]]
    assert_head_is_the_rfc_root(log_db)
    assert stored_seqs(log_db) == list(range(13))
    # Two tenants in one batch: one transaction for both, through the locked path; both heads known.
    other = "0b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e"
    with log_db.session() as session:
        audit_log.ensure_log(session, other, "kluis/other")
        session.commit()
    mixed = _committed_many(log_db, [[13, 14, 15, 16]], heads, lambda i: other if i % 2 else TENANT)
    assert mixed == [[0, 13, 1, 14]]
    assert heads[TENANT][0] == 15 and heads[other][0] == 2
    assert_head_is_the_rfc_root(log_db)


@pytest.fixture
def scratch(
    log_db: Database, other_writer: sqlite3.Connection
) -> Iterator[tuple[sqlite3.Connection, audit_process.WalIndex]]:
    """A writer of a scratch table whose log SQLite never checkpoints by itself, and the wal-index
    file, with the log empty to start from."""
    other_writer.execute("PRAGMA wal_autocheckpoint=0")
    other_writer.execute("CREATE TABLE scratch (x BLOB)")
    other_writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index = audit_process.WalIndex.of(other_writer)
    yield other_writer, index
    index.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_wal_backlog_reads_the_pages_sqlite_has_not_yet_copied(
    scratch: tuple[sqlite3.Connection, audit_process.WalIndex],
) -> None:
    writer, index = scratch
    assert index.backlog() == 0
    for _ in range(20):
        writer.execute("INSERT INTO scratch VALUES (randomblob(6000))")
    backlog = index.backlog()
    _, in_log, copied = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert backlog == in_log >= 40  # SQLite's own count; each row spills onto an overflow page
    assert copied == in_log and index.backlog() == 0
    assert audit_process.WalIndex(index.path.with_name("no-such-file-shm")).backlog() is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_checkpoint_if_due_copies_the_log_only_from_the_threshold_on(
    scratch: tuple[sqlite3.Connection, audit_process.WalIndex],
) -> None:
    writer, index = scratch
    writer.execute("INSERT INTO scratch VALUES (randomblob(100000))")  # ~25 pages
    small = index.backlog()
    assert small is not None and 0 < small < audit_process.CHECKPOINT_PAGES
    assert not audit_process.checkpoint_if_due(writer, index)
    assert index.backlog() == small  # left alone below the threshold
    while (index.backlog() or 0) < audit_process.CHECKPOINT_PAGES:
        writer.execute("INSERT INTO scratch VALUES (randomblob(100000))")
    assert audit_process.checkpoint_if_due(writer, index)
    assert index.backlog() == 0
    assert not audit_process.checkpoint_if_due(
        writer, audit_process.WalIndex(index.path.with_name("no-such-file-shm"))
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_writer_process_checkpoints_the_log_after_its_replies(
    log_db: Database, committer: AuditGroupCommitter, other_writer: sqlite3.Connection
) -> None:
    # One entry per batch, so that every batch is a commit of its own (~10-15 pages each).
    async def main() -> list[int]:
        return [await committer.append(event(i)) for i in range(200)]

    assert asyncio.run(main()) == list(range(200))
    index = audit_process.WalIndex.of(other_writer)
    log_file = index.path.with_name(index.path.name.removesuffix("-shm") + "-wal")
    # The log grew past the threshold at some point (its file never shrinks)...
    assert log_file.stat().st_size > audit_process.CHECKPOINT_PAGES * 4096
    # ...and was copied by the writer process, not by SQLite's safety net (ten times further).
    backlog = index.backlog()
    index.close()
    assert backlog is not None and backlog < audit_process.CHECKPOINT_PAGES
    assert stored_seqs(log_db) == list(range(200))
    assert_head_is_the_rfc_root(log_db)


def test_a_batch_crosses_to_the_writer_process_unchanged() -> None:
    # Every field set, nested values included: the channel pickles them field by field.
    full = AuditEvent(
        tenant=TENANT,
        name="vault:record:read",
        actor=Actor(type="representative", id="a" * 64, on_behalf_of="b" * 64),
        trace=TraceContext(trace_id="1" * 32, span_id="2" * 16, parent_span_id="3" * 16),
        start_time=utcnow(),
        end_time=utcnow(),
        status="error",
        decision="deny",
        reason="grant_revoked",
        data_subject_id="c" * 64,
        processing_activity_id="bijstand",
        legal_basis="consent",
        grant_id="g1",
        department="inkomen",
        client_id="client-1",
        categories=("inkomen", "schulden"),
        details={"fields": "werkgever", "version": 3, "selected": True, "none": None},
    )
    batch = [full, event(7)]
    back = audit_process.decode(audit_process.encode(batch))
    assert back == batch and all(type(e) is AuditEvent for e in back)
    assert type(back[0].actor) is Actor and type(back[0].trace) is TraceContext
    reply = audit_process.Reply(seqs=[4, 5])
    assert audit_process.decode(audit_process.encode(reply)) == reply
