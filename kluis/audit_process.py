"""The audit writer process of the SQLite group commit (``kluis.group_commit``).

The server is one event loop holding Python's GIL: on SQLite every microsecond of an audit append
(validating the event, encoding its leaf, planning the Merkle nodes, the inserts) was spent on that
loop, ~60 µs per read, while the machine's other core sat idle. A process of its own appends and
commits the batches instead: the loop hands a batch over in one message and learns the batch's
sequence numbers in one reply, and the append's work runs in parallel with the loop's
(docs/performance.md). PostgreSQL does not gain from it (its own processes already use the other
core; measured) and keeps the awaited append on the loop.

The channel is a socket pair between the server and its own child (``multiprocessing``), never a
network socket; messages are pickled ``AuditEvent`` batches one way and ``Reply`` the other.
A batch is one ``BEGIN IMMEDIATE`` … ``COMMIT`` (``synchronous=FULL``: durable when the reply is
sent). The process may wait for the database's lock (another writer: a portal write, an import);
the loop never does. It ends when the server closes its end of the channel, after the batch it is
writing; it ignores SIGINT (Ctrl-C in a terminal reaches the whole process group), so a batch is
never cut short by it.

The process also checkpoints the write-ahead log, right after it has replied to a batch, instead
of letting SQLite do it inside a commit: a checkpoint copies ~1,000 pages into the database file
and syncs it (~10 ms on a slow disk), and inside the commit every read of that batch waited for it
(docs/performance.md, item 20).
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from operator import attrgetter
from pathlib import Path
from typing import Any

from audit import services as audit_log
from audit.schemas import Actor, AuditEvent, TraceContext
from kluis.db import Database

# SQLite's own automatic checkpoint runs inside the commit once the log holds this many pages (its
# default); this process checkpoints after the reply at the same size, and leaves SQLite's at ten
# times that as a safety net, should the log's size ever not be readable.
CHECKPOINT_PAGES = 1000
SAFETY_NET_PAGES = 10 * CHECKPOINT_PAGES


@dataclass(frozen=True, slots=True)
class Reply:
    """A batch's outcome: its sequence numbers in order, or the error that failed all of it."""

    seqs: list[int] | None = None
    error: BaseException | None = None


def _by_fields(cls: type) -> tuple[type, Callable[[Any], Any]]:
    """``cls`` pickled as its fields' values in order, read in C (``attrgetter``); unpickled by
    calling ``cls`` with them. A slotted dataclass's own ``__getstate__`` calls
    ``dataclasses.fields()`` for every instance: ~7 µs per event, on the server's loop."""
    values = attrgetter(*(f.name for f in fields(cls)))
    return cls, lambda instance: (cls, values(instance))


# How the server's end pickles a batch (a dispatch table of its own: nothing global changes).
_REDUCERS = dict(_by_fields(cls) for cls in (AuditEvent, Actor, TraceContext))


def encode(value: list[AuditEvent] | Reply) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(value)
    return buffer.getvalue()


def decode(data: bytes) -> Any:
    # Only ever data from the other end of this program's own socket pair (see the module docstring).
    return pickle.loads(data)  # noqa: S301


def serve(channel: Connection, url: str, synchronous: str) -> None:
    """The child's main: append and commit each batch that arrives, reply, until the channel closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    db = Database(url, sqlite_synchronous=synchronous)
    connection = db.dedicated_connection(write=True)  # this process's one; its pool stays unused
    assert isinstance(connection, sqlite3.Connection)
    connection.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
    index = WalIndex.of(connection)
    try:
        while True:
            try:
                events: list[AuditEvent] = decode(channel.recv_bytes())
            except EOFError:
                return  # the server closed the channel: it is stopping
            reply = _commit(connection, events)
            try:
                channel.send_bytes(_encoded(reply))
            except OSError:
                return  # the server is gone; the batch is committed all the same
            checkpoint_if_due(connection, index)
    finally:
        index.close()
        connection.close()
        db.dispose()


class WalIndex:
    """The wal-index (``-shm``) file of a connection's main database, read through one descriptor
    kept open for the writer process's life (the header is read after every batch)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def of(cls, connection: sqlite3.Connection) -> WalIndex:
        [path] = [row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"]
        return cls(Path(f"{path}-shm"))

    def backlog(self) -> int | None:
        """Pages in the write-ahead log not yet copied into the database, read from the wal-index
        header (https://www.sqlite.org/walformat.html, 2.2: ``mxFrame`` at byte 16, ``nBackfill``
        at byte 96, native byte order); ``None`` if it cannot be read (tried again next time).
        Python's sqlite3 module does not offer the WAL hook that would tell it. Read without
        SQLite's locks: a header torn by another connection's commit at that moment makes one
        checkpoint come a batch early or late at worst."""
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            header = os.pread(self._fd, 136, 0)
        except OSError:
            self.close()
            return None
        if len(header) < 136:
            return None
        frames: int = struct.unpack_from("=I", header, 16)[0]
        backfilled: int = struct.unpack_from("=I", header, 96)[0]
        return max(frames - backfilled, 0)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def checkpoint_if_due(connection: sqlite3.Connection, index: WalIndex) -> bool:
    """Copy the log into the database once it holds ``CHECKPOINT_PAGES`` (PASSIVE: it never waits
    for or blocks a reader; the next batch's transaction then starts the log from its beginning).
    A failure is left to the next batch, or to SQLite's own checkpoint."""
    backlog = index.backlog()
    if backlog is None or backlog < CHECKPOINT_PAGES:
        return False
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:
        return False
    return True


def _commit(connection: sqlite3.Connection, events: list[AuditEvent]) -> Reply:
    try:
        connection.execute("BEGIN IMMEDIATE")  # waits for another writer (busy_timeout), not the loop
        appended = audit_log.append_many_dbapi(
            connection, events, postgres=False, integrity_error=sqlite3.IntegrityError
        )
        connection.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - the server fails every waiter of the batch with it
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        return Reply(error=exc)
    return Reply(seqs=[entry.seq for entry in appended])


def _encoded(reply: Reply) -> bytes:
    if reply.error is None:
        return encode(reply)  # sequence numbers only: nothing that could fail to round-trip
    try:
        data = encode(reply)
        decode(data)  # an exception whose constructor does not round-trip would fail the server
    except Exception:  # noqa: BLE001 - then its kind is all that is told
        data = encode(Reply(error=RuntimeError(type(reply.error).__name__)))
    return data
