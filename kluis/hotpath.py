"""Lean reads for the department read path, the one every API read pays for.

The decisions stay where they belong (``consent.ResourceGuard.decide``, ``VaultService.decide_read``);
only the fetching is different: one indexed look-up on connections kept for this path (DB-API;
on PostgreSQL also psycopg ``AsyncConnection``s of the event loop), instead of the ORM, which
costs ten times more per query than the query itself (see ``docs/performance.md``). The rows
become read-only stand-ins of the models (``_row``): every field of the model as a plain
attribute, without SQLAlchemy's instrumentation, which cost about half a microsecond per attribute
read, some forty per read. The deciding code only reads attributes of
these models (they have no methods), so it cannot tell how they were read; a stand-in cannot be
added to a session by mistake either. The values come from our own database, validated when
written.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlmodel import SQLModel

from consent.models import Grant
from consent.schemas import VerifiedToken
from kluis.db import Database, close_now
from vault.models import Record, RecordVersion, Resident

# What ``_grant_of`` reads: the grant, its resident's erasure, whether this token was revoked.
# ``{t}``: PostgreSQL sends the JSON lists as text (parsed once per distinct value by ``_json``;
# psycopg would parse them again for every row).
_GRANT_COLUMNS = (
    "g.id, g.tenant_id, g.resident_id, g.department_id, g.department_code, g.client_id, g.request_id",
    "g.purpose_code, g.legal_basis, g.categories{t}, g.may_write{t}",
    "g.valid_from, g.valid_until, g.revoked_at, g.tokens_revoked_before, g.created_at, r.erased_at",
    "(SELECT 1 FROM consent_revoked_token t WHERE t.jti = {p} AND t.grant_id = g.id)",
)
GRANT_COLUMNS = 18  # how many; where the record's columns start in GRANT_AND_RECORD_SQL
# What ``_record_of`` reads: the resident and the current version of one category.
_RECORD_COLUMNS = (
    "r.id, r.tenant_id, r.bsn_pseudonym, r.wrapped_data_key, r.kek_version, r.audit_pseudonym, r.created_at",
    "r.erased_at, rec.id, rec.current_version, rec.created_at, rec.updated_at, v.version, v.source",
    "v.created_at, v.ciphertext",
)
_GRANT_FROM = "FROM consent_grant g JOIN resident r ON r.id = g.resident_id"
# The data API's grant look-up (parameters: the token's jti, the grant id).
GRANT_SQL = f"SELECT {', '.join(_GRANT_COLUMNS)} {_GRANT_FROM} WHERE g.id = {{p}}"
# The record read's one statement: the grant, and for the grant's own resident the current version
# of the category — one look-up instead of two, one snapshot for the decision and the data
# (parameters: the token's jti, the category, the grant id).
GRANT_AND_RECORD_SQL = f"""
SELECT {", ".join(_GRANT_COLUMNS + _RECORD_COLUMNS)} {_GRANT_FROM}
LEFT JOIN record rec
  ON rec.tenant_id = g.tenant_id AND rec.resident_id = g.resident_id AND rec.category = {{p}}
LEFT JOIN record_version v ON v.record_id = rec.id AND v.version = rec.current_version
WHERE g.id = {{p}}
"""

# PostgreSQL: the same statement for several requests at once (see ``GroupLookup``), one row per
# request that finds its grant, numbered by its place in the arrays (parameters: three text arrays
# of the same length — the tokens' jtis, the categories, the grant ids).
GRANT_AND_RECORD_MANY_SQL = f"""
SELECT q.n, {", ".join(_GRANT_COLUMNS + _RECORD_COLUMNS).format(p="q.jti", t="::text")}
FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(jti, category, grant_id, n)
JOIN consent_grant g ON g.id = q.grant_id JOIN resident r ON r.id = g.resident_id
LEFT JOIN record rec
  ON rec.tenant_id = g.tenant_id AND rec.resident_id = g.resident_id AND rec.category = q.category
LEFT JOIN record_version v ON v.record_id = rec.id AND v.version = rec.current_version
"""  # noqa: S608 - the module's constants only


_PARSED: dict[Any, datetime] = {}
_PARSED_MAX = 4096


def _time(value: Any) -> datetime | None:
    """As ``vault.models.UtcDateTime`` reads it: SQLite keeps naive UTC text, PostgreSQL aware values.

    Remembered per value: a read parses the same handful of timestamps (the grant's, the record's)
    over and over, eleven per read. Datetimes are immutable, so sharing them is safe."""
    if value is None:
        return None
    found = _PARSED.get(value)
    if found is not None:
        return found
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(parsed, datetime)
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()  # bounded; refilled by the values in use
    _PARSED[value] = parsed
    return parsed


def _at(value: Any) -> datetime:
    found = _time(value)
    assert found is not None, "a NOT NULL timestamp was NULL"
    return found


_LOADED: dict[str | bytes, tuple[str, ...]] = {}


def _json(value: Any) -> list[str]:
    """A JSON list of codes (a grant's categories); text from SQLite is remembered like ``_time``."""
    if not isinstance(value, str | bytes):
        return [str(v) for v in value]
    found = _LOADED.get(value)
    if found is None:
        found = tuple(str(v) for v in json.loads(value))
        if len(_LOADED) >= _PARSED_MAX:
            _LOADED.clear()
        _LOADED[value] = found
    return list(found)  # a fresh list each time: the row's list is its own


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


M = TypeVar("M", bound=SQLModel)


_STAND_INS: dict[type[SQLModel], type] = {}


def stand_in(cls: type[SQLModel]) -> type:
    """The plain class whose instances stand in for rows of ``cls`` on the read path."""
    found = _STAND_INS.get(cls)
    if found is None:
        found = type(
            f"Lean{cls.__name__}", (), {"__doc__": f"A read-only {cls.__name__} row (kluis.hotpath)."}
        )
        _STAND_INS[cls] = found
    return found


def _row(cls: type[M], /, **values: Any) -> M:
    """A stand-in for a row of ``cls`` with ``values``, which name every field of ``cls`` (checked by
    tests/api/test_hotpath_rows.py): attribute reads as on ``cls.model_construct(**values)``."""
    row = stand_in(cls)()
    row.__dict__ = values
    return cast(M, row)


class LeanReads:
    def __init__(self, db: Database) -> None:
        self.db = db
        mark, as_text = ("?", "") if db.is_sqlite else ("%s", "::text")
        self.grant_sql = GRANT_SQL.format(p=mark, t=as_text)
        self.grant_and_record_sql = GRANT_AND_RECORD_SQL.format(p=mark, t=as_text)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        # PostgreSQL: the event loop's connection (psycopg AsyncConnection, autocommit), so that a
        # look-up waits for its round trip on the loop instead of in a thread: no thread hops and
        # no GIL hand-overs per request. One is enough: ``GroupLookup`` has one statement in flight
        # at a time. Bound to the loop that opened it.
        self._async_connection: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self.group = GroupLookup(self)

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        connection = self._take()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone()
            cursor.close()
        except BaseException:
            connection.close()  # a connection in an unknown state is not reused
            raise
        with self._lock:
            self._idle.append(connection)
        return tuple(row) if row is not None else None

    def _take(self) -> Any:
        # Connections kept out of the pool for good: a pool check-out and its reset on return cost
        # more than the query. One per concurrent caller (one on SQLite, where the loop calls inline).
        with self._lock:
            if self._idle:
                return self._idle.pop()
        connection: Any = self.db.dedicated_connection()
        if not self.db.is_sqlite:
            # One statement is one snapshot: no transaction around it, so no ROLLBACK round trip
            # after each look-up (the look-up is one round trip to PostgreSQL instead of two).
            connection.rollback()
            connection.autocommit = True
        return connection

    @property
    def is_async(self) -> bool:
        """Whether look-ups are awaited on the event loop (PostgreSQL) rather than called inline."""
        return not self.db.is_sqlite

    async def _all_async(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        connection = await self._connection_async()
        try:
            # Binary results: the record's ciphertext as it is stored, where text would be hex that
            # psycopg decodes (~27 µs for 2 KiB), and timestamps without parsing.
            cursor = await connection.execute(sql, params, binary=True)
            rows = await cursor.fetchall()
        except BaseException:
            self._async_connection = None
            await connection.close()  # a connection in an unknown state is not reused
            raise
        return [tuple(row) for row in rows]

    async def _connection_async(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async_loop is not loop:  # a new loop (a new server in this process): a new one
            close_now(self._async_connection)
            self._async_connection, self._async_loop = None, loop
        if self._async_connection is None:
            self._async_connection = await self.db.connect_async(autocommit=True)
        return self._async_connection

    async def aclose(self) -> None:
        """Close the event loop's connection (the server's shutdown, on its loop)."""
        connection, self._async_connection = self._async_connection, None
        if connection is not None:
            await connection.close()

    def close(self) -> None:
        with self._lock:
            while self._idle:
                self._idle.pop().close()
        # No loop to await on here (aclose closes it properly).
        close_now(self._async_connection)
        self._async_connection = None

    def grant(self, verified: VerifiedToken) -> tuple[Grant, datetime | None, bool] | None:
        """A ``consent.resource.GrantFetcher``: the grant, the resident's erasure, token revocation."""
        row = self._one(self.grant_sql, (verified.jti, verified.grant_id))
        return None if row is None else _grant_of(row)

    def prefetch(self, category: str) -> RecordPrefetch:
        """A grant fetcher for the read of ``category`` that reads the record in the same statement."""
        return RecordPrefetch(self, category)


RecordRows = tuple[Resident | None, Record | None, RecordVersion | None]


class RecordPrefetch:
    """A ``consent.resource.GrantFetcher`` (one per request) whose one statement also reads the
    grant's resident and the current version of ``category``, kept for ``rows_of``."""

    def __init__(self, lean: LeanReads, category: str) -> None:
        self.lean = lean
        self.category = category
        self.grant_id: str | None = None
        self.rows: RecordRows = (None, None, None)

    def __call__(self, verified: VerifiedToken) -> tuple[Grant, datetime | None, bool] | None:
        row = self.lean._one(self.lean.grant_and_record_sql, (verified.jti, self.category, verified.grant_id))
        return self._read(row)

    async def fetch_async(self, verified: VerifiedToken) -> tuple[Grant, datetime | None, bool] | None:
        """The same, awaited on the event loop (PostgreSQL, see ``LeanReads.is_async``), in one
        statement with the look-ups of other requests that wait at the same time."""
        row = await self.lean.group.fetch(verified.jti, self.category, verified.grant_id)
        return self._read(row)

    def _read(self, row: tuple[Any, ...] | None) -> tuple[Grant, datetime | None, bool] | None:
        if row is None:
            return None
        found = _grant_of(row)
        grant = found[0]
        self.grant_id = grant.id
        resident_row = row[GRANT_COLUMNS:]
        # Only the grant's own tenant's resident (the join is on the resident's id alone).
        self.rows = (
            (None, None, None)
            if resident_row[1] != grant.tenant_id
            else _record_of(resident_row, self.category)
        )
        return found

    def rows_of(self, grant_id: str, category: str) -> RecordRows:
        """The rows read with the grant ``grant_id`` for ``category``. Every granted access was
        decided on this fetcher's statement, so they are there; anything else is refused."""
        if self.grant_id is None or grant_id != self.grant_id or category != self.category:
            raise LookupError("the record was not read with this grant")
        return self.rows


def _grant_of(row: tuple[Any, ...]) -> tuple[Grant, datetime | None, bool]:
    grant = _row(
        Grant,
        id=row[0],
        tenant_id=row[1],
        resident_id=row[2],
        department_id=row[3],
        department_code=row[4],
        client_id=row[5],
        request_id=row[6],
        purpose_code=row[7],
        legal_basis=row[8],
        categories=_json(row[9]),
        may_write=_json(row[10]),
        valid_from=_at(row[11]),
        valid_until=_at(row[12]),
        revoked_at=_time(row[13]),
        revoked_by=None,  # not read: the decision needs only whether and when
        refresh_hash=None,  # not read: the data API never sees refresh tokens
        tokens_revoked_before=_time(row[14]),
        created_at=_at(row[15]),
    )
    return grant, _time(row[16]), row[17] is not None


def _record_of(row: tuple[Any, ...], category: str) -> RecordRows:
    """The ``_RECORD_COLUMNS`` of a row as rows."""
    resident = _row(
        Resident,
        id=row[0],
        tenant_id=row[1],
        bsn_pseudonym=_bytes(row[2]),
        bsn_ciphertext=None,  # not read: a department never gets the BSN from the vault
        wrapped_data_key=_bytes(row[3]),
        kek_version=row[4],
        audit_pseudonym=row[5],
        created_at=_at(row[6]),
        erased_at=_time(row[7]),
    )
    if row[8] is None or row[12] is None:
        return resident, None, None
    record = _row(
        Record,
        id=row[8],
        tenant_id=row[1],
        resident_id=row[0],
        category=category,
        current_version=row[9],
        created_at=_at(row[10]),
        updated_at=_at(row[11]),
    )
    version = _row(
        RecordVersion,
        record_id=row[8],
        version=row[12],
        tenant_id=row[1],
        source=row[13],
        created_at=_at(row[14]),
        ciphertext=bytes(row[15]),
    )
    return resident, record, version


class GroupLookup:
    """PostgreSQL: the grant-and-record look-ups of concurrent requests, in one statement.

    On PostgreSQL each statement costs the event loop far more in the client (psycopg's adaptation
    and waiting, ~150 µs) than the server needs to answer it; the look-ups of requests that arrive
    while a statement is in flight go together in the next one (``GRANT_AND_RECORD_MANY_SQL``), as
    the group commit does for their audit entries. Every look-up still reads the live grant: its
    statement is sent after the request arrived, and each request gets only its own row.
    """

    def __init__(self, lean: LeanReads) -> None:
        self.lean = lean
        self._waiting: list[tuple[tuple[str, str, str], asyncio.Future[tuple[Any, ...] | None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def fetch(self, jti: str, category: str, grant_id: str) -> tuple[Any, ...] | None:
        """The row ``GRANT_AND_RECORD_SQL`` would give for these parameters (``None``: no grant)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (a new server in this process): start afresh
            self._waiting, self._drainer, self._loop = [], None, loop
        future: asyncio.Future[tuple[Any, ...] | None] = loop.create_future()
        self._waiting.append(((jti, category, grant_id), future))
        if self._drainer is None:
            # Started on the loop's next turn: the requests whose turn comes first join this batch.
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[tuple[str, str, str], asyncio.Future[tuple[Any, ...] | None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                jtis, categories, grant_ids = ([p[i] for p, _ in batch] for i in range(3))
                try:
                    rows = await self.lean._all_async(
                        GRANT_AND_RECORD_MANY_SQL, (jtis, categories, grant_ids)
                    )
                except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                found = {row[0]: row[1:] for row in rows}
                for number, (_, future) in enumerate(batch, start=1):
                    if not future.done():  # a request that went away meanwhile
                        future.set_result(found.get(number))
                batch = []
        except BaseException:  # cancelled (shutdown): nobody is left waiting for ever
            for _, future in (*batch, *self._waiting):
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._drainer = None
