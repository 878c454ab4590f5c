"""Group commit of audit entries for the read hot path.

A department read must not return data before its audit entry is durable. One fsync per request
(SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``) costs more than everything else
on the path, so concurrent requests hand their entries to one group committer that appends them all
in one transaction and commits once; each request waits for *its* batch's commit before it answers.
A failed batch fails every request in it (fail closed) — no data leaves without its entry.

Two ways to write a batch:

- **In a writer process (SQLite, ``ProcessGroupCommitter``).** Requests queue their entry and
  await; a callback scheduled with ``call_soon`` runs after every request that became ready in the
  same loop iteration has queued its own, and hands the whole batch to the audit writer process
  (``kluis.audit_process``) in one message; the process appends and commits it and replies with the
  sequence numbers. Entries queued meanwhile form the next batch, sent as soon as the reply is
  back. The append's work (~60 µs per entry on the loop before) runs on the machine's other core;
  earlier designs measured on the way there (docs/performance.md): all of the append on a writer
  thread (every system call of the loop gave up the GIL to the writer and waited to get it back: a
  GIL convoy that cost more than the fsync), then the statements on the loop and only ``COMMIT`` on
  a thread. If the process dies, its batch fails (fail closed) and the next batch starts a new one.
- **Awaited on the event loop (PostgreSQL, ``AwaitedGroupCommitter``).** The batch goes over a
  psycopg ``AsyncConnection`` kept for this: every round trip is awaited, so the loop serves other
  requests meanwhile, and no thread takes the GIL from it (on a writer thread, the same convoy as
  above cost PostgreSQL reads most of their throughput). Knowing the log's head from its last
  batch, the committer writes a batch as one statement in its own transaction
  (``audit.services.commit_many_async``): one round trip instead of four, each of which costs the
  loop ~150 µs here. Entries queued meanwhile form the next batch. (A writer process measured no
  faster here: PostgreSQL's own processes already keep the other core busy.)
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any, TypedDict, Unpack

from audit import services as audit_log
from audit.schemas import AuditEvent
from kluis import audit_process
from kluis.db import Database, close_now

log = logging.getLogger("kluis.audit")
Waiters = list[tuple[AuditEvent, "asyncio.Future[int]"]]


class CommitterOptions(TypedDict, total=False):
    """What every group committer takes besides its database (``AuditGroupCommitter``)."""

    max_batch: int
    on_commit: Callable[[Sequence[AuditEvent]], None] | None


class AuditGroupCommitter(ABC):
    """The queue, the batches and their waiters; how a batch is written is the subclass's
    (``group_committer`` picks it for the database)."""

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
        self._pending: Waiters = []
        self._in_flight: Waiters | None = None  # the batch being written
        self._idle: asyncio.Event | None = None  # set whenever no batch is in flight (for aclose)
        self._closed = False

    async def append(self, event: AuditEvent) -> int:
        """Append ``event`` and wait until it is durable. Raises if the batch failed."""
        if self._closed:
            raise AuditWriterClosedError
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._pending.append((event, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    async def start(self) -> None:  # noqa: B027 - a hook, empty unless a subclass needs it
        """Get ready before the first batch (the server's start-up); nothing to do by default."""

    def _flush(self) -> None:
        if self._in_flight is not None:
            return  # the running batch starts the next one when it is done
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        if not batch:
            return
        if self._closed:  # entries that arrive after shutdown are refused, never written half-way
            _fail(batch, AuditWriterClosedError())
            return
        self._in_flight = batch
        if self._idle is not None:
            self._idle.clear()
        self._write(batch)

    @abstractmethod
    def _write(self, batch: Waiters) -> None:
        """Start writing ``batch``; call ``_done`` once it is committed or has failed."""

    def _done(self, batch: Waiters, seqs: Sequence[int] | None, error: BaseException | None) -> None:
        """Tell the batch's waiters, then start the next batch."""
        self._in_flight = None
        if self._idle is not None:
            self._idle.set()
        if error is not None:
            _fail(batch, error)
        else:
            assert seqs is not None
            self._committed([event for event, _ in batch])
            for (_, future), seq in zip(batch, seqs, strict=True):
                if not future.done():  # a request cancelled meanwhile (client gone) has no one to tell
                    future.set_result(seq)
        if self._pending:
            self._flush()

    async def aclose(self) -> None:
        """``close`` at the server's shutdown, on its loop: the batch in flight commits and its
        waiters are told first."""
        self._closed = True
        if self._in_flight is not None:
            self._idle = asyncio.Event()
            await self._idle.wait()
        await self._aclose_resources()
        self.close()

    async def _aclose_resources(self) -> None:  # noqa: B027 - a hook, as start
        """Close what closes properly only on the loop; nothing by default."""

    def close(self) -> None:
        """Stop without a loop to wait on: a batch in flight is still committed, its waiters are
        not told (their loop is gone)."""
        self._closed = True

    def _committed(self, events: Sequence[AuditEvent]) -> None:
        if self._on_commit is not None:
            try:  # before the waiters answer: an answered read is always counted (a few µs per batch)
                self._on_commit(events)
            except Exception as exc:  # noqa: BLE001 - counting must never fail or stop the writer
                log.warning("audit batch observer failed: %s", type(exc).__name__)


def group_committer(
    db: Database, *, on_commit: Callable[[Sequence[AuditEvent]], None] | None = None
) -> AuditGroupCommitter:
    """The group committer for ``db``: in a writer process on SQLite, awaited on PostgreSQL."""
    if db.is_sqlite:
        return ProcessGroupCommitter(db, on_commit=on_commit)
    return AwaitedGroupCommitter(db, on_commit=on_commit)


class ProcessGroupCommitter(AuditGroupCommitter):
    """SQLite: each batch goes to the audit writer process (``kluis.audit_process``)."""

    def __init__(self, db: Database, **options: Unpack[CommitterOptions]) -> None:
        super().__init__(db, **options)
        # The writer process and the server's end of its channel, on this loop.
        self._process: BaseProcess | None = None
        self._channel: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _write(self, batch: Waiters) -> None:
        try:
            channel = self._started()
            channel.send_bytes(audit_process.encode([event for event, _ in batch]))
        except Exception as exc:  # noqa: BLE001 - every waiter learns the batch failed
            if isinstance(exc, OSError):  # gone, or could not start: the next batch starts another
                self._stop_process()
                exc = AuditWriterGoneError(str(exc))
            self._done(batch, None, exc)

    async def start(self) -> None:
        """Start the writer process now, off the loop: at the server's start-up, so that its first
        read does not wait for it. The first writer process of a server starts the fork server, a
        new interpreter that imports the append's code: ~0.6 s, several seconds on a loaded
        machine, during which the loop would stand still."""
        if self._closed or self._channel is not None:
            return
        process, channel = await asyncio.to_thread(self._spawn)
        if self._channel is not None:  # one was started meanwhile: keep that one
            channel.close()
            process.join()
            return
        self._attach(process, channel)

    def _started(self) -> Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (a new server in this process)
            self._stop_process()
        if self._channel is None:  # not started with the server, or the last one ended
            self._attach(*self._spawn())
        assert self._channel is not None
        return self._channel

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        ours, theirs = _context().Pipe()
        process = _context().Process(
            target=audit_process.serve,
            args=(theirs, self._db.url, self._db.sqlite_synchronous),
            name="kluis-audit-writer",
            daemon=True,  # ends with the server, whatever happens to the server
        )
        process.start()
        theirs.close()
        return process, ours

    def _attach(self, process: BaseProcess, channel: Connection) -> None:
        loop = asyncio.get_running_loop()
        self._process, self._channel, self._loop = process, channel, loop
        loop.add_reader(channel.fileno(), self._on_reply)

    def _on_reply(self) -> None:
        batch, channel = self._in_flight, self._channel
        if channel is None:
            return
        try:
            reply: audit_process.Reply = audit_process.decode(channel.recv_bytes())
        except Exception as exc:  # noqa: BLE001 - ended (EOF), or a reply that cannot be read
            code = self._stop_process()  # not trusted any more either way: the next batch starts another
            log.error("the audit writer process ended (exit code %s): %s", code, type(exc).__name__)  # noqa: TRY400 - no traceback to tell
            if batch is not None:
                self._done(batch, None, AuditWriterGoneError(f"exit code {code}"))
            return
        if batch is not None:
            self._done(batch, reply.seqs, reply.error)

    def _stop_process(self, timeout: float = 30) -> int | None:
        """Close the channel (the process ends after the batch it is writing) and reap the process."""
        channel, process, loop = self._channel, self._process, self._loop
        self._channel = self._process = self._loop = None
        if channel is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(channel.fileno())
            channel.close()
        if process is None:
            return None
        process.join(timeout)
        if process.is_alive():  # stuck (a disk that does not answer): it holds no one's data
            process.kill()
            process.join()
        return process.exitcode

    def close(self) -> None:
        super().close()
        self._stop_process()


class AwaitedGroupCommitter(AuditGroupCommitter):
    """PostgreSQL: each batch is one statement awaited on the loop over a psycopg connection."""

    def __init__(self, db: Database, **options: Unpack[CommitterOptions]) -> None:
        super().__init__(db, **options)
        # The psycopg AsyncConnection of this loop, and the logs' states after this writer's last
        # batch.
        self._async_connection: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._heads: dict[str, audit_log.Head] = {}
        self._task: asyncio.Task[None] | None = None

    def _write(self, batch: Waiters) -> None:
        # Kept: the loop holds tasks only weakly.
        self._task = asyncio.get_running_loop().create_task(self._write_async(batch))

    async def _write_async(self, batch: Waiters) -> None:
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
            self._done(batch, None, exc)
        else:
            self._done(batch, [entry.seq for entry in appended], None)

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

    async def _aclose_resources(self) -> None:
        if self._async_connection is not None:
            connection, self._async_connection = self._async_connection, None
            await connection.close()

    def close(self) -> None:
        super().close()
        close_now(self._async_connection)  # without a loop to await on (aclose closes it properly)
        self._async_connection = None


def _context() -> ForkServerContext:
    """Writer processes fork from a clean server process that has imported their code once (a new
    interpreter per writer took ~0.6 s; forking the server itself is unsafe with its threads)."""
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, ForkServerContext)
    context.set_forkserver_preload(["kluis.audit_process"])
    return context


class AuditWriterGoneError(RuntimeError):
    """The audit writer process ended (or could not be reached) with a batch in flight."""


class AuditWriterClosedError(RuntimeError):
    """An entry handed to the group committer after it was closed (the server is stopping)."""

    def __init__(self) -> None:
        super().__init__("the audit writer is closed")


def _fail(batch: Waiters, exc: BaseException) -> None:
    log.error("audit batch of %d entries failed: %s", len(batch), type(exc).__name__)
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
