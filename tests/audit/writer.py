"""A writer process for the concurrency and crash tests (forked from the test process).

It opens its own database connection, reports ``ready``, waits for the start signal (so every
writer starts at once), then appends ``count`` events in transactions of ``batch``. Only after a
transaction committed does it write ``ack <seq> <writer> <n>`` lines to its pipe: an acknowledged
entry must never be lost, whenever the process is killed.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.synchronize import Event

from audit import services
from kluis.db import Database
from tests.audit.factories import event

FORK = multiprocessing.get_context("fork")


def write(url: str, tenant: str, writer: int, count: int, batch: int, go: Event, out: int) -> None:
    db = Database(url, pool=False)
    with db.read_session() as session:
        services.log_head(session, tenant)  # connected: ready to go
    os.write(out, b"ready\n")
    go.wait()
    n = 0
    while n < count:
        size = min(batch, count - n)
        events = [event(n + k, tenant=tenant, details={"writer": writer, "n": n + k}) for k in range(size)]
        with db.session() as session:
            appended = services.append_many(session, events)
            session.commit()
        # One write per transaction, far below PIPE_BUF: a kill never leaves half an ack behind.
        os.write(out, "".join(f"ack {a.seq} {writer} {n + k}\n" for k, a in enumerate(appended)).encode())
        n += size
    db.dispose()


class Writer:
    """A forked writer and the read end of its pipe."""

    def __init__(self, url: str, tenant: str, writer: int, count: int, batch: int, go: Event) -> None:
        self._read, out = os.pipe()
        self.process = FORK.Process(
            target=write, args=(url, tenant, writer, count, batch, go, out), daemon=True
        )
        self.process.start()
        os.close(out)
        self._buffer = b""

    def _fill(self) -> bool:
        chunk = os.read(self._read, 65536)
        self._buffer += chunk
        return bool(chunk)

    def wait_ready(self) -> None:
        while b"ready\n" not in self._buffer:
            if not self._fill():
                raise RuntimeError("the writer died before it was ready")

    def output(self) -> str:
        """Everything the writer wrote, once it has ended (read until end of file)."""
        while self._fill():
            pass
        os.close(self._read)
        return self._buffer.decode()
