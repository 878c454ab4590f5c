"""Group commit of audit entries for the read hot path.

A department read must not return data before its audit entry is durable. One fsync per request
(SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``) costs more than everything else
on the path, so concurrent requests hand their entries to one writer thread that appends them all
in one transaction and commits once; each request waits for *its* batch's commit before it answers.
A failed batch fails every request in it (fail closed) — no data leaves without its entry.

The writer is a thread rather than a task because the commit blocks: the event loop keeps serving
other requests while the disk syncs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from audit import services as audit_log
from audit.schemas import AuditEvent
from kluis.db import Database

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

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="kluis-audit-writer", daemon=True)
                    self._thread.start()

    def submit(self, event: AuditEvent) -> Future[int]:
        """Queue ``event``; the future resolves to its sequence number once committed."""
        self._ensure_started()
        future: Future[int] = Future()
        self._queue.put((event, future))
        return future

    async def append(self, event: AuditEvent) -> int:
        """Append ``event`` and wait until it is durable. Raises if the batch failed."""
        return await asyncio.wrap_future(self.submit(event))

    def close(self) -> None:
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
        if self._on_commit is not None:
            try:  # before the waiters answer: an answered read is always counted (a few µs per batch)
                self._on_commit(events)
            except Exception as exc:  # noqa: BLE001 - counting must never fail or stop the writer
                log.warning("audit batch observer failed: %s", type(exc).__name__)
        for (_, future), entry in zip(batch, appended, strict=True):
            future.set_result(entry.seq)
