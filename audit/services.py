"""The audit log: append in the caller's transaction, prove, sign checkpoints, search.

Appending one batch for one tenant is the same four statements, whatever the batch size::

    SELECT size, frontier FROM audit_log_state WHERE tenant_id = ? FOR UPDATE
    INSERT INTO audit_entry ...            (every entry of the batch)
    INSERT INTO audit_node ...             (the perfect subtrees the new leaves complete)
    UPDATE audit_log_state SET ... WHERE tenant_id = ? AND size = <old size>

(on PostgreSQL the last three travel as one statement: two round trips per append).

The lock makes sequence numbers dense and ordered under concurrent writers: on PostgreSQL it is the
row lock of ``FOR UPDATE``; on SQLite the write unit of work holds the database lock from its
``BEGIN IMMEDIATE`` (SQLite ignores ``FOR UPDATE``). Nothing here commits: the caller commits the
act and its entries together, and an exception means neither happened (fail closed).

Reads take any session. Proofs fetch only the O(log n) stored subtrees they need.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audit import leaf, merkle, rawsql
from audit.checkpoints import CheckpointPayload, CheckpointSigner, valid_origin
from audit.errors import (
    CheckpointRefusedError,
    InvalidEventError,
    LogOriginError,
    LogStateError,
    ProofError,
    ProofRequestError,
    UnknownLogError,
)
from audit.models import CHECKPOINT, ENTRY, STATE
from audit.queries import export_csv, export_jsonl, search, summary
from audit.schemas import (
    AppendedEntry,
    AuditEvent,
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    LogHead,
)

__all__ = [
    "append",
    "append_many",
    "checkpoints",
    "consistency_proof",
    "ensure_log",
    "export_csv",
    "export_jsonl",
    "get_entries",
    "get_entry",
    "inclusion_proof",
    "latest_checkpoint",
    "log_head",
    "pending_checkpoints",
    "root_at",
    "search",
    "sign_checkpoint",
    "sign_pending_checkpoints",
    "summary",
]

MAX_ENTRIES_PER_READ = 1000

_LOCK_STATE = (
    select(STATE.c.size, STATE.c.root_hash, STATE.c.frontier, STATE.c.origin)
    .where(STATE.c.tenant_id == bindparam("tenant"))
    .with_for_update()
)
_READ_STATE = select(STATE.c.origin, STATE.c.size, STATE.c.root_hash).where(
    STATE.c.tenant_id == bindparam("tenant")
)
_CHECKPOINT_COLUMNS = (
    CHECKPOINT.c.tree_size,
    CHECKPOINT.c.root_hash,
    CHECKPOINT.c.timestamp_ms,
    CHECKPOINT.c.kid,
    CHECKPOINT.c.jws,
)


def _connection(session: Session) -> Connection:
    # Core statements on the session's own connection: same transaction, none of the ORM's
    # per-object bookkeeping (this is the hot path of every audited request).
    return session.connection()


# -- the log ---------------------------------------------------------------------------------------
def ensure_log(session: Session, tenant_id: str, origin: str) -> None:
    """Create the tenant's (empty) log named ``origin`` unless it exists. Idempotent; no commit.

    Raises ``LogOriginError`` if the tenant's log exists under another origin.
    """
    if not leaf.TENANT.fullmatch(tenant_id) or not valid_origin(origin):
        raise InvalidEventError("a log needs an opaque tenant id and a printable origin")
    conn = _connection(session)
    existing = conn.execute(_READ_STATE, {"tenant": tenant_id}).first()
    if existing is None:
        values = {
            "tenant_id": tenant_id,
            "origin": origin,
            "size": 0,
            "root_hash": merkle.EMPTY_ROOT,
            "frontier": b"",
        }
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(STATE).values(values).on_conflict_do_nothing())
        existing = conn.execute(_READ_STATE, {"tenant": tenant_id}).first()
    if existing is None or existing.origin != origin:
        raise LogOriginError


def log_head(session: Session, tenant_id: str) -> LogHead:
    """The tree as it stands (unsigned). Raises ``UnknownLogError``."""
    row = _connection(session).execute(_READ_STATE, {"tenant": tenant_id}).first()
    if row is None:
        raise UnknownLogError
    return LogHead(tenant_id=tenant_id, origin=row.origin, tree_size=row.size, root_hash=row.root_hash)


def append(session: Session, event: AuditEvent) -> AppendedEntry:
    """Append ``event`` to its tenant's log in the caller's transaction (no commit)."""
    return append_many(session, [event])[0]


def append_many(session: Session, events: Sequence[AuditEvent]) -> list[AppendedEntry]:
    """Append ``events`` (any mix of tenants) in the caller's transaction, in order; no commit.

    Raises ``InvalidEventError`` before writing anything if one event is not valid,
    ``UnknownLogError`` for a tenant without a log, ``LogStateError`` if the stored state does not
    fit its entries (a rolled-back state collides with existing rows). The caller must roll back
    after any exception.
    """
    conn = _connection(session)
    return append_many_dbapi(
        conn.connection.dbapi_connection,
        events,
        postgres=conn.dialect.name == "postgresql",
        integrity_error=conn.dialect.loaded_dbapi.IntegrityError,
    )


def append_many_dbapi(
    dbapi_connection: Any,
    events: Sequence[AuditEvent],
    *,
    postgres: bool,
    integrity_error: type[Exception],
) -> list[AppendedEntry]:
    """``append_many`` on a bare DB-API connection (sqlite3 or psycopg) whose transaction the caller
    holds: for a caller that keeps its own connection for appends (the group commit of the read
    path), where even a SQLAlchemy session per batch is measurable. Same rules as ``append_many``.
    """
    if not events:
        return []
    objects, by_tenant = _validated(events)
    results: list[AppendedEntry | None] = [None] * len(events)
    writer = _Writer(dbapi_connection.cursor(), postgres=postgres, integrity_error=integrity_error)
    try:
        for tenant_id in sorted(by_tenant):  # one lock order for every writer: batches never deadlock
            positions = by_tenant[tenant_id]
            old_size, frontier = writer.lock(tenant_id)
            entries, nodes, state, appended = _plan(
                tenant_id, old_size, frontier, [objects[p] for p in positions]
            )
            if writer.write(entries, nodes, state) != 1:  # someone moved the state without the lock
                raise LogStateError
            for position, entry in zip(positions, appended, strict=True):
                results[position] = entry
    finally:
        writer.close()
    return [entry for entry in results if entry is not None]


Head = tuple[int, bytes]  # a log's size and frontier, as its state row holds them


async def commit_many_async(
    connection: Any,
    events: Sequence[AuditEvent],
    *,
    integrity_error: type[Exception],
    heads: dict[str, Head],
) -> list[AppendedEntry]:
    """Append ``events`` and commit them, on a psycopg ``AsyncConnection`` in autocommit mode (the
    group commit of PostgreSQL, every round trip awaited on the event loop). Same rules as
    ``append_many``; nothing is written if anything fails.

    ``heads`` holds the log states this caller wrote last (kept up to date here). For one tenant
    with a known head, the append is ONE statement, its own transaction: the state moves only if
    it still is that head (size and frontier), and the rows are inserted only if it moved, so a
    log another writer moved meanwhile gets nothing. Then, as without a known head, the state is
    locked and read, and the rows written, in one transaction (four round trips instead of one).
    """
    if not events:
        return []
    objects, by_tenant = _validated(events)
    if len(by_tenant) == 1:
        [tenant_id] = by_tenant
        head = heads.pop(tenant_id, None)  # back only once this append is known to have landed
        if head is not None:
            entries, nodes, state, appended = _plan(tenant_id, head[0], head[1], objects)
            params = [*state, head[1], *_json_batch(entries, nodes)]
            try:
                cursor = await connection.execute(_GUARDED_APPEND, params)
                row = await cursor.fetchone()
            except integrity_error as exc:  # the state was there, yet rows hold "our" positions
                raise LogStateError from exc
            if row is not None and row[0] == 1:
                heads[tenant_id] = _head_after(state)
                return appended
    results: list[AppendedEntry | None] = [None] * len(events)
    moved: dict[str, Head] = {}
    async with connection.transaction(), connection.cursor() as cursor:
        writer = _Writer(cursor, postgres=True, integrity_error=integrity_error)
        for tenant_id in sorted(by_tenant):  # the same lock order as every other writer
            positions = by_tenant[tenant_id]
            await cursor.execute(*writer.lock_statement(tenant_id))
            old_size, frontier = _state_of(await cursor.fetchone())
            entries, nodes, state, appended = _plan(
                tenant_id, old_size, frontier, [objects[p] for p in positions]
            )
            try:
                await cursor.execute(*_postgres_append(entries, nodes, state))
            except integrity_error as exc:  # a row already holds one of "our" positions
                raise LogStateError from exc
            if cursor.rowcount != 1:
                raise LogStateError
            for position, entry in zip(positions, appended, strict=True):
                results[position] = entry
            moved[tenant_id] = _head_after(state)
    heads.update(moved)  # committed
    return [entry for entry in results if entry is not None]


def _validated(events: Sequence[AuditEvent]) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Every event's entry object (all validated before anything is written), positions by tenant."""
    objects = [leaf.leaf_object(0, event) for event in events]
    by_tenant: dict[str, list[int]] = {}
    for position, event in enumerate(events):
        by_tenant.setdefault(event.tenant, []).append(position)
    return objects, by_tenant


def _state_of(row: Any) -> tuple[int, bytes]:
    if row is None:
        raise UnknownLogError
    return int(row[0]), bytes(row[1])


def _plan(
    tenant_id: str, old_size: int, frontier: bytes, objects: list[dict[str, Any]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], tuple[Any, ...], list[AppendedEntry]]:
    """The rows of one tenant's append after ``old_size`` entries: entries, nodes, new state."""
    try:
        edge = merkle.CompactRange.from_bytes(old_size, frontier)
    except ValueError as exc:
        raise LogStateError from exc
    appended: list[AppendedEntry] = []
    entries: list[tuple[Any, ...]] = []
    nodes: list[tuple[Any, ...]] = []
    for obj in objects:
        seq = obj["seq"] = edge.size
        data = leaf.encode(obj)
        digest = merkle.leaf_hash(data)
        entries.append((tenant_id, seq, digest, data, *leaf.columns(obj)))
        nodes.extend((tenant_id, level, index, value) for level, index, value in edge.append(digest))
        appended.append(AppendedEntry(seq=seq, leaf_hash=digest))
    state = (edge.size, edge.root(), edge.to_bytes(), tenant_id, old_size)
    return entries, nodes, state, appended


_ENTRY_COLUMNS = ("tenant_id", "seq", "leaf_hash", "leaf_bytes", *leaf.COLUMNS)
_NODE_COLUMNS = ("tenant_id", "level", "idx", "hash")
# Their PostgreSQL types, for reading them back out of a JSON batch (checked against the models by
# tests/audit/test_append.py).
ENTRY_TYPES = ("text", "bigint", "bytea", "bytea", "bigint", *["text"] * (len(leaf.COLUMNS) - 1))
NODE_TYPES = ("text", "smallint", "bigint", "bytea")


def _from_json(table: str, columns: tuple[str, ...], types: tuple[str, ...], joined: str = "") -> str:
    """An INSERT of the rows of one JSON array parameter, each row an array in ``columns`` order
    (``bytea`` values in base64); each row once per row of ``joined``, if given."""
    values = ", ".join(
        f"decode(r->>{i}, 'base64')" if kind == "bytea" else f"(r->>{i})::{kind}"
        for i, kind in enumerate(types)
    )
    # Read as jsonb, parsed once: on a json value every ``->>`` parses the row's text again up to its
    # element, once per column (measured: ~300 µs of PostgreSQL's CPU for a batch of 8).
    # Table, column and type names are this module's constants; the rows are one parameter.
    source = "jsonb_array_elements(%s::jsonb) r" + (f", {joined}" if joined else "")
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM {source}"  # noqa: S608


def _json_rows(rows: list[tuple[Any, ...]], types: tuple[str, ...]) -> str:
    binary = [i for i, kind in enumerate(types) if kind == "bytea"]
    listed = [list(row) for row in rows]
    for row in listed:
        for i in binary:
            row[i] = base64.b64encode(row[i]).decode("ascii")
    return json.dumps(listed)


_ENTRIES_FROM_JSON = _from_json("audit_entry", _ENTRY_COLUMNS, ENTRY_TYPES)
_NODES_FROM_JSON = _from_json("audit_node", _NODE_COLUMNS, NODE_TYPES)
# Moves a log's state from ``size`` on (parameters: new size, root and frontier, tenant, old size).
_STATE_UPDATE = (
    "UPDATE audit_log_state SET size = {m}, root_hash = {m}, frontier = {m} "
    "WHERE tenant_id = {m} AND size = {m}"
)
_PG_STATE_UPDATE = _STATE_UPDATE.format(m="%s")
# One tenant's append as one statement, for a writer that knows the log's head (``commit_many_async``;
# parameters: the new size, root and frontier, the tenant, the old size and frontier, the rows).
# The inserts read their rows joined with the state update's result: if the state was not at that
# head, nothing is updated and nothing inserted. The update locks the state row before any insert
# (its rows come first), as every writer locks it first.
_GUARDED_APPEND = (
    f"WITH u AS ({_PG_STATE_UPDATE} AND frontier = %s RETURNING 1), "  # noqa: S608 - constants only
    f"e AS ({_from_json('audit_entry', _ENTRY_COLUMNS, ENTRY_TYPES, joined='u')}), "
    f"n AS ({_from_json('audit_node', _NODE_COLUMNS, NODE_TYPES, joined='u')}) "
    "SELECT count(*) FROM u"
)
# The same append for a writer that holds the state's lock (``_Writer``): no guard needed.
_PG_APPEND = f"WITH e AS ({_ENTRIES_FROM_JSON}), n AS ({_NODES_FROM_JSON}) {_PG_STATE_UPDATE}"


def _json_batch(entries: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]]) -> list[str]:
    return [_json_rows(entries, ENTRY_TYPES), _json_rows(nodes, NODE_TYPES)]


def _postgres_append(
    entries: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]], state: tuple[Any, ...]
) -> tuple[str, list[Any]]:
    """One round trip, one statement text for every batch size (prepared once): the inserts as
    data-modifying CTEs of the state update, their rows as two JSON parameters."""
    return _PG_APPEND, [*_json_batch(entries, nodes), *state]


def _head_after(state: tuple[Any, ...]) -> Head:
    return state[0], state[2]  # the new size and frontier


class _Writer:
    """The statements of an append, on the DBAPI cursor of the session's own connection.

    Same connection, same transaction, but none of SQLAlchemy's per-statement work (cache look-up,
    events, result set-up), which was most of the cost of an append. On PostgreSQL, where every
    statement is a network round trip, the inserts ride along with the state update as
    data-modifying CTEs: an append is two round trips (lock, write); the rows go as two JSON
    parameters, which psycopg passes on as they are: adapting every value of a batch (multi-row
    VALUES, ``executemany`` or arrays) cost the event loop more than the round trips
    (docs/performance.md). Reads elsewhere use Core.
    """

    def __init__(self, cursor: Any, *, postgres: bool, integrity_error: type[Exception]) -> None:
        self.postgres = postgres
        self.integrity_error = integrity_error
        self.cursor = cursor
        self.mark = "%s" if postgres else "?"

    def close(self) -> None:
        self.cursor.close()

    def lock(self, tenant_id: str) -> tuple[int, bytes]:
        self.cursor.execute(*self.lock_statement(tenant_id))
        return _state_of(self.cursor.fetchone())

    def lock_statement(self, tenant_id: str) -> tuple[str, tuple[str]]:
        sql = f"SELECT size, frontier FROM audit_log_state WHERE tenant_id = {self.mark}"  # noqa: S608 - constants only
        return sql + (" FOR UPDATE" if self.postgres else ""), (tenant_id,)

    def write(
        self, entries: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]], state: tuple[Any, ...]
    ) -> int:
        """Insert ``entries`` and ``nodes``, then move the state; return the updated row count."""
        try:
            for many, sql, params in self.write_statements(entries, nodes, state):
                (self.cursor.executemany if many else self.cursor.execute)(sql, params)
            return int(self.cursor.rowcount)
        except self.integrity_error as exc:  # a row already holds one of "our" positions
            raise LogStateError from exc

    def write_statements(
        self, entries: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]], state: tuple[Any, ...]
    ) -> list[tuple[bool, str, Any]]:
        """``(executemany?, sql, parameters)`` of an append's writes; the last one moves the state."""
        if self.postgres:
            return [(False, *_postgres_append(entries, nodes, state))]
        statements: list[tuple[bool, str, Any]] = [
            (True, self._insert("audit_entry", _ENTRY_COLUMNS), entries)
        ]
        if nodes:
            statements.append((True, self._insert("audit_node", _NODE_COLUMNS), nodes))
        statements.append((False, _STATE_UPDATE.format(m="?"), state))
        return statements

    def _insert(self, table: str, columns: tuple[str, ...]) -> str:
        row = "(" + ", ".join([self.mark] * len(columns)) + ")"
        # Table and column names are this module's constants; values always go as parameters.
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {row}"  # noqa: S608


# -- entries and proofs ---------------------------------------------------------------------------
def _size(conn: Connection, tenant_id: str) -> int:
    row = conn.execute(_READ_STATE, {"tenant": tenant_id}).first()
    if row is None:
        raise UnknownLogError
    size: int = row.size
    return size


def get_entry(session: Session, tenant_id: str, seq: int) -> LogEntry | None:
    found = get_entries(session, tenant_id, seq, seq + 1)
    return found[0] if found else None


def get_entries(session: Session, tenant_id: str, start: int, end: int) -> list[LogEntry]:
    """Entries ``start <= seq < end`` (at most ``MAX_ENTRIES_PER_READ``), like RFC 6962 get-entries."""
    if start < 0 or end < start:
        raise ProofRequestError
    end = min(end, start + MAX_ENTRIES_PER_READ)
    rows = _connection(session).execute(
        select(ENTRY.c.seq, ENTRY.c.leaf_bytes, ENTRY.c.leaf_hash)
        .where(ENTRY.c.tenant_id == tenant_id, ENTRY.c.seq >= start, ENTRY.c.seq < end)
        .order_by(ENTRY.c.seq)
    )
    return [LogEntry(seq=r.seq, leaf_bytes=r.leaf_bytes, leaf_hash=r.leaf_hash) for r in rows]


def stored_subtrees(
    conn: Connection, tenant_id: str, wanted: set[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    """The stored hashes of perfect subtrees, in one statement of primary-key look-ups (leaf hashes
    from ``audit_entry``, the rest from ``audit_node``). Raises ``LogStateError`` if one is
    missing: a complete tree has every one of them.

    Plain SQL (``audit.rawsql``): as a SQLAlchemy expression this cost milliseconds to build. The
    shapes are the ones each planner gets right without statistics: on SQLite one UNION ALL branch
    per level (a row-value IN list or an OR of terms scanned all of the tenant's nodes); on
    PostgreSQL a join with a VALUES list (the UNION ALL took 5 ms on a fresh, unanalysed table).
    """
    if not wanted:
        return {}
    leaves = sorted(index for level, index in wanted if level == 0)
    inner = sorted(node for node in wanted if node[0] > 0)
    # Only table and column names and parameter marks go into the text; values are parameters.
    if conn.dialect.name == "postgresql":
        branches = [
            "SELECT 0::smallint, seq, leaf_hash FROM audit_entry WHERE tenant_id = %s AND seq = ANY(%s)"
        ]
        params: list[Any] = [tenant_id, leaves]
        if inner:
            values = ", ".join(["(%s::smallint, %s::bigint)"] * len(inner))
            branches.append(
                f"SELECT n.level, n.idx, n.hash FROM (VALUES {values}) AS w(level, idx) "  # noqa: S608
                "JOIN audit_node n ON n.tenant_id = %s AND n.level = w.level AND n.idx = w.idx"
            )
            params += [*(value for node in inner for value in node), tenant_id]
    else:
        branches, params = [], []
        if leaves:
            where = f"tenant_id = ? AND seq IN ({', '.join('?' * len(leaves))})"
            branches.append(f"SELECT 0, seq, leaf_hash FROM audit_entry WHERE {where}")  # noqa: S608
            params += [tenant_id, *leaves]
        by_level: dict[int, list[int]] = {}
        for level, index in inner:
            by_level.setdefault(level, []).append(index)
        for level, indexes in by_level.items():
            where = f"tenant_id = ? AND level = ? AND idx IN ({', '.join('?' * len(indexes))})"
            branches.append(f"SELECT level, idx, hash FROM audit_node WHERE {where}")  # noqa: S608
            params += [tenant_id, level, *indexes]
    rows = rawsql.fetch_all(conn, " UNION ALL ".join(branches), params)
    found = {(int(level), int(index)): bytes(value) for level, index, value in rows}
    if len(found) != len(wanted):
        raise LogStateError("a stored subtree of the audit log is missing")
    return found


def _range_hashes(conn: Connection, tenant_id: str, ranges: list[merkle.Range]) -> list[bytes]:
    stored = stored_subtrees(conn, tenant_id, merkle.nodes_for(ranges))
    return merkle.hashes_for(ranges, stored.__getitem__)


def root_at(session: Session, tenant_id: str, tree_size: int) -> bytes:
    """The root of the tree's first ``tree_size`` entries, from the stored subtrees."""
    conn = _connection(session)
    if not 0 <= tree_size <= _size(conn, tenant_id):
        raise ProofRequestError
    if tree_size == 0:
        return merkle.EMPTY_ROOT
    return _range_hashes(conn, tenant_id, [(0, tree_size)])[0]


def inclusion_proof(session: Session, tenant_id: str, seq: int, tree_size: int) -> InclusionProof:
    """The audit path of entry ``seq`` in the tree of size ``tree_size`` (RFC 9162 §2.1.3)."""
    conn = _connection(session)
    if not 0 <= seq < tree_size or tree_size > _size(conn, tenant_id):
        raise ProofRequestError
    path = _range_hashes(conn, tenant_id, merkle.inclusion_ranges(seq, tree_size))
    return InclusionProof(leaf_index=seq, tree_size=tree_size, audit_path=tuple(path))


def consistency_proof(session: Session, tenant_id: str, first: int, second: int) -> ConsistencyProof:
    """The proof that tree ``second`` extends tree ``first`` (RFC 9162 §2.1.4)."""
    conn = _connection(session)
    if not 0 <= first <= second or second > _size(conn, tenant_id):
        raise ProofRequestError
    proof = _range_hashes(conn, tenant_id, merkle.consistency_ranges(first, second))
    return ConsistencyProof(first=first, second=second, consistency=tuple(proof))


# -- checkpoints ----------------------------------------------------------------------------------
def _checkpoint(origin: str, row: Any) -> Checkpoint:
    return Checkpoint(
        origin=origin,
        tree_size=row.tree_size,
        root_hash=row.root_hash,
        timestamp=leaf.from_ms(row.timestamp_ms),
        kid=row.kid,
        jws=row.jws,
    )


def _origin(conn: Connection, tenant_id: str) -> str:
    row = conn.execute(_READ_STATE, {"tenant": tenant_id}).first()
    if row is None:
        raise UnknownLogError
    origin: str = row.origin
    return origin


def latest_checkpoint(session: Session, tenant_id: str) -> Checkpoint | None:
    conn = _connection(session)
    row = conn.execute(
        select(*_CHECKPOINT_COLUMNS)
        .where(CHECKPOINT.c.tenant_id == tenant_id)
        .order_by(CHECKPOINT.c.tree_size.desc())
        .limit(1)
    ).first()
    return None if row is None else _checkpoint(_origin(conn, tenant_id), row)


def checkpoints(session: Session, tenant_id: str, *, after: int = -1, limit: int = 1000) -> list[Checkpoint]:
    """Checkpoints with ``tree_size > after``, smallest first."""
    conn = _connection(session)
    origin = _origin(conn, tenant_id)
    rows = conn.execute(
        select(*_CHECKPOINT_COLUMNS)
        .where(CHECKPOINT.c.tenant_id == tenant_id, CHECKPOINT.c.tree_size > after)
        .order_by(CHECKPOINT.c.tree_size)
        .limit(min(limit, MAX_ENTRIES_PER_READ))
    )
    return [_checkpoint(origin, row) for row in rows]


def sign_checkpoint(session: Session, tenant_id: str, signer: CheckpointSigner, now: datetime) -> Checkpoint:
    """Sign the tree as it stands, in the caller's transaction (no commit).

    Returns the latest checkpoint unchanged if the log did not grow since. Refuses
    (``CheckpointRefusedError``) a tree that is not a consistent extension of the latest checkpoint,
    and (``LogStateError``) a state whose root the stored subtrees do not give.
    """
    conn = _connection(session)
    state = conn.execute(_LOCK_STATE, {"tenant": tenant_id}).first()
    if state is None:
        raise UnknownLogError
    size: int = state.size
    root: bytes = state.root_hash
    try:
        edge = merkle.CompactRange.from_bytes(size, state.frontier)
    except ValueError as exc:
        raise LogStateError from exc
    stored_root = _range_hashes(conn, tenant_id, [(0, size)])[0] if size else merkle.EMPTY_ROOT
    if edge.root() != root or stored_root != root:
        raise LogStateError
    latest = conn.execute(
        select(*_CHECKPOINT_COLUMNS)
        .where(CHECKPOINT.c.tenant_id == tenant_id)
        .order_by(CHECKPOINT.c.tree_size.desc())
        .limit(1)
    ).first()
    timestamp_ms = leaf.to_ms(now)
    if latest is not None:
        if latest.tree_size == size and latest.root_hash == root:
            return _checkpoint(state.origin, latest)
        if latest.tree_size >= size:
            raise CheckpointRefusedError
        proof = _range_hashes(conn, tenant_id, merkle.consistency_ranges(latest.tree_size, size))
        try:
            merkle.verify_consistency(latest.tree_size, size, latest.root_hash, root, proof)
        except ProofError as exc:
            raise CheckpointRefusedError from exc
        timestamp_ms = max(timestamp_ms, latest.timestamp_ms)  # never back in time
    payload = CheckpointPayload(
        origin=state.origin, tree_size=size, root_hash=root, timestamp_ms=timestamp_ms
    )
    jws = signer.sign(payload.to_bytes())
    conn.execute(
        insert(CHECKPOINT).values(
            tenant_id=tenant_id,
            tree_size=size,
            root_hash=root,
            timestamp_ms=timestamp_ms,
            kid=signer.kid,
            jws=jws,
        )
    )
    return Checkpoint(
        origin=state.origin,
        tree_size=size,
        root_hash=root,
        timestamp=leaf.from_ms(timestamp_ms),
        kid=signer.kid,
        jws=jws,
    )


def pending_checkpoints(session: Session) -> list[str]:
    """The tenants whose log grew since their latest checkpoint (or that have none yet)."""
    latest = (
        select(CHECKPOINT.c.tenant_id, func.max(CHECKPOINT.c.tree_size).label("tree_size"))
        .group_by(CHECKPOINT.c.tenant_id)
        .subquery()
    )
    rows = _connection(session).execute(
        select(STATE.c.tenant_id)
        .outerjoin(latest, latest.c.tenant_id == STATE.c.tenant_id)
        .where(STATE.c.size > func.coalesce(latest.c.tree_size, -1), STATE.c.size > 0)
        .order_by(STATE.c.tenant_id)
    )
    return [r.tenant_id for r in rows]


def sign_pending_checkpoints(session: Session, signer: CheckpointSigner, now: datetime) -> list[Checkpoint]:
    """Sign every log that grew (call every few seconds, then commit). No commit here."""
    return [sign_checkpoint(session, tenant_id, signer, now) for tenant_id in pending_checkpoints(session)]
