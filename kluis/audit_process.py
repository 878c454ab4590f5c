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
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from audit import services as audit_log
from audit.schemas import AuditEvent
from kluis.db import Database


@dataclass(frozen=True, slots=True)
class Reply:
    """A batch's outcome: its sequence numbers in order, or the error that failed all of it."""

    seqs: list[int] | None = None
    error: BaseException | None = None


def encode(value: list[AuditEvent] | Reply) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> Any:
    # Only ever data from the other end of this program's own socket pair (see the module docstring).
    return pickle.loads(data)  # noqa: S301


def serve(channel: Connection, url: str, synchronous: str) -> None:
    """The child's main: append and commit each batch that arrives, reply, until the channel closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    db = Database(url, sqlite_synchronous=synchronous)
    proxy = db.write_engine.raw_connection()
    connection = proxy.driver_connection
    proxy.detach()  # this process's one connection; the pool is not used here
    assert isinstance(connection, sqlite3.Connection)
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
    finally:
        connection.close()
        db.dispose()


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
