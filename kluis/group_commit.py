"""Group commit of audit entries for the read hot path.

A department read must not return data before its audit entry is durable. One fsync per request
(SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``) costs more than everything else
on the path, so concurrent requests hand their entries to one group committer that appends them all
in one transaction and commits once; each request waits for *its* batch's commit before it answers.
A failed batch fails every request in it (fail closed) — no data leaves without its entry.

Two ways to write a batch:

- **Statements on the event loop, COMMIT on a thread (SQLite).** Requests queue their entry and
  await; a callback scheduled with ``call_soon`` runs after every request that became ready in the
  same loop iteration has queued its own, and runs ``BEGIN IMMEDIATE`` and the inserts of the
  whole batch on a connection kept for this (no I/O wait: WAL writes are buffered). Only the
  ``COMMIT``, which waits for the disk, goes to a commit thread; entries queued meanwhile form the
  next batch, started as soon as the commit is back. With all of the append on a writer thread,
  every system call of the event loop thread (each SQLite read) gave up the GIL to the writer and
  waited to get it back: a GIL convoy that cost more than the fsync (docs/performance.md). The
  connection does not wait for locks on the loop: if another writer holds the database (a portal
  write, an import), the batch goes to the writer thread, which may wait.
- **Awaited on the event loop (PostgreSQL).** The batch goes over a psycopg ``AsyncConnection``
  kept for this: every round trip is awaited, so the loop serves other requests meanwhile, and no
  thread takes the GIL from it (on a writer thread, the same convoy as above cost PostgreSQL reads
  most of their throughput). Knowing the log's head from its last batch, the committer writes a
  batch as one statement in its own transaction (``audit.services.commit_many_async``): one round
  trip instead of four, each of which costs the loop ~150 µs here. Entries queued meanwhile form the
  next batch.
- **On a writer thread (SQLite when the database is busy).** The thread waits for the lock and keeps
  the loop serving meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from audit import services as audit_log
from audit.schemas import AuditEvent
from kluis.db import Database, close_now

log = logging.getLogger("kluis.audit")
_STOP = object()


class AuditGroupCommitter:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 256,
        on_commit: Callable[[Sequence[AuditEvent]], None] | None = None,
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._on_commit = on_commit  # told each committed batch once (metrics)
        self._queue: queue.SimpleQueue[tuple[AuditEvent, Future[int]] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._inline = db.is_sqlite
        self._async_connection: Any = None  # psycopg AsyncConnection of the loop below (PostgreSQL)
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._heads: dict[str, audit_log.Head] = {}  # the logs' states after this writer's last batch
        self._task: asyncio.Task[None] | None = None
        self._pending: list[tuple[AuditEvent, asyncio.Future[int]]] = []
        self._connection: sqlite3.Connection | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._in_flight = False
        self._closed = False

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="kluis-audit-writer", daemon=True)
                    self._thread.start()

    def submit(self, event: AuditEvent) -> Future[int]:
        """Queue ``event``; the future resolves to its sequence number once committed."""
        if self._closed:
            raise AuditWriterClosedError
        self._ensure_started()
        future: Future[int] = Future()
        self._queue.put((event, future))
        return future

    async def append(self, event: AuditEvent) -> int:
        """Append ``event`` and wait until it is durable. Raises if the batch failed."""
        if self._closed:
            raise AuditWriterClosedError
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._pending.append((event, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_inline if self._inline else self._flush_async)
        return await future

    # -- PostgreSQL: awaited on the loop --------------------------------------------------------
    def _flush_async(self) -> None:
        if self._in_flight:
            return  # the running batch starts the next one when it is done
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._closed:
            _fail(batch, AuditWriterClosedError())
            return
        self._in_flight = True
        self._task = asyncio.get_running_loop().create_task(self._write_async(batch))

    async def _write_async(self, batch: list[tuple[AuditEvent, asyncio.Future[int]]]) -> None:
        import psycopg

        events = [event for event, _ in batch]
        try:
            connection = await self._connection_async()
            try:
                appended = await audit_log.commit_many_async(
                    connection, events, integrity_error=psycopg.IntegrityError, heads=self._heads
                )
            except BaseException:
                self._heads.clear()  # whatever was known of the logs is not trusted after a failure
                if connection.broken:
                    self._async_connection = None  # a new one for the next batch
                raise
        except Exception as exc:  # noqa: BLE001 - every waiter learns the batch failed
            _fail(batch, exc)
        else:
            self._committed(events)
            for (_, future), entry in zip(batch, appended, strict=True):
                if not future.done():  # a request cancelled meanwhile (client gone) has no one to tell
                    future.set_result(entry.seq)
        finally:
            self._in_flight = False
            self._task = None
            if self._pending:
                self._flush_async()

    async def _connection_async(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async_loop is not loop:  # a new loop (a new server in this process)
            close_now(self._async_connection)
            self._async_connection, self._async_loop = None, loop
        if self._async_connection is None:
            # Autocommit: a batch is one statement when the log's head is known, its own
            # transaction; otherwise commit_many_async opens one (audit.services).
            self._async_connection = await self._db.connect_async(autocommit=True)
        return self._async_connection

    async def aclose(self) -> None:
        """``close`` at the server's shutdown, on its loop: the batch in flight commits first."""
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._async_connection is not None:
            connection, self._async_connection = self._async_connection, None
            await connection.close()
        self.close()

    def _flush_inline(self) -> None:
        if self._in_flight:
            return  # the running commit's callback flushes whatever queued meanwhile
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._closed:  # entries that arrive after shutdown are refused, never written half-way
            _fail(batch, AuditWriterClosedError())
            return
        events = [event for event, _ in batch]
        connection = self._inline_connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                _fail(batch, exc)
                return
            for event, future in batch:  # the database is busy: let the thread wait, not the loop
                _settle_from(future, asyncio.wrap_future(self.submit(event)))
            return
        try:
            appended = audit_log.append_many_dbapi(
                connection, events, postgres=False, integrity_error=sqlite3.IntegrityError
            )
        except Exception as exc:  # noqa: BLE001 - every waiter learns the batch failed
            connection.execute("ROLLBACK")
            _fail(batch, exc)
            return
        # The statements ran here (microseconds, no I/O wait); only COMMIT, which waits for the
        # disk, goes to the commit thread. Entries queued meanwhile form the next batch.
        self._in_flight = True
        done = asyncio.get_running_loop().run_in_executor(self._commit_thread(), connection.execute, "COMMIT")
        done.add_done_callback(
            lambda finished: self._after_commit(batch, [e.seq for e in appended], finished)
        )

    def _after_commit(
        self,
        batch: list[tuple[AuditEvent, asyncio.Future[int]]],
        seqs: list[int],
        finished: asyncio.Future[Any],
    ) -> None:
        self._in_flight = False
        exc = finished.exception()
        if exc is not None:
            connection = self._inline_connection()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            _fail(batch, exc)
        else:
            self._committed([event for event, _ in batch])
            for (_, future), seq in zip(batch, seqs, strict=True):
                if not future.done():  # a request cancelled meanwhile (client gone) has no one to tell
                    future.set_result(seq)
        if self._pending:
            self._flush_inline()

    def _commit_thread(self) -> ThreadPoolExecutor:
        if self._committer is None:
            self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kluis-audit-commit")
        return self._committer

    def _inline_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            proxy = self._db.write_engine.raw_connection()
            connection = proxy.driver_connection
            proxy.detach()  # kept for the appends; the pool opens another for itself
            assert isinstance(connection, sqlite3.Connection)
            connection.execute("PRAGMA busy_timeout=0")  # never wait for a lock on the event loop
            self._connection = connection
        return self._connection

    def _committed(self, events: Sequence[AuditEvent]) -> None:
        if self._on_commit is not None:
            try:  # before the waiters answer: an answered read is always counted (a few µs per batch)
                self._on_commit(events)
            except Exception as exc:  # noqa: BLE001 - counting must never fail or stop the writer
                log.warning("audit batch observer failed: %s", type(exc).__name__)

    def close(self) -> None:
        self._closed = True
        close_now(self._async_connection)  # without a loop to await on (aclose closes it properly)
        self._async_connection = None
        if self._committer is not None:
            self._committer.shutdown(wait=True)  # a commit in flight finishes first
            self._committer = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit([b for b in batch if isinstance(b, tuple)])
            if stop:
                return

    def _commit(self, batch: list[tuple[AuditEvent, Future[int]]]) -> None:
        events = [event for event, _ in batch]
        try:
            with self._db.session() as session:
                appended = audit_log.append_many(session, events)
                session.commit()
        except Exception as exc:  # noqa: BLE001 - every waiter learns the batch failed
            log.error("audit batch of %d entries failed: %s", len(batch), type(exc).__name__)  # noqa: TRY400 - type only, no traceback with values
            for _, future in batch:
                future.set_exception(exc)
            return
        self._committed(events)
        for (_, future), entry in zip(batch, appended, strict=True):
            future.set_result(entry.seq)


class AuditWriterClosedError(RuntimeError):
    """An entry handed to the group committer after it was closed (the server is stopping)."""

    def __init__(self) -> None:
        super().__init__("the audit writer is closed")


def _fail(batch: list[tuple[AuditEvent, asyncio.Future[int]]], exc: BaseException) -> None:
    log.error("audit batch of %d entries failed: %s", len(batch), type(exc).__name__)
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _settle_from(future: asyncio.Future[int], source: asyncio.Future[int]) -> None:
    def copy(done: asyncio.Future[int]) -> None:
        if future.done():
            return
        if done.exception() is not None:
            future.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            future.set_result(done.result())

    source.add_done_callback(copy)
