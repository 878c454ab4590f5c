"""The lean read path's rows are what ``model_construct`` would build: every field given, the same
values, usable like rows the ORM loaded (kluis/hotpath.py ``_row``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel

from consent.models import Grant
from kluis import hotpath
from kluis.db import Database
from vault.models import Record, RecordVersion, Resident

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
GRANT_ROW = (
    "g",
    "t",
    "r",
    "d",
    "inkomen",
    "c",
    "q",
    "p",
    "consent",
    '["a"]',
    '["b"]',
    NOW,
    NOW,
    None,
    None,
    NOW,
    None,
    None,
)
RECORD_ROW = ("r", "t", b"p", b"k", 1, "a", NOW, None, "rec", 1, NOW, NOW, 1, "brp", NOW, b"c")
VERIFIED = type("Verified", (), {"jti": "j", "grant_id": "g"})()


@pytest.mark.parametrize("model", [Grant, Resident, Record, RecordVersion])
def test_a_row_reads_as_model_construct_builds_it(model: type[SQLModel]) -> None:
    configure_mappers()  # as the app's first query does
    values: dict[str, Any] = {name: f"value-{name}" for name in model.model_fields}
    lean, full = hotpath._row(model, **values), model.model_construct(**values)
    assert type(lean) is hotpath.stand_in(model)
    assert all(getattr(lean, name) == getattr(full, name) for name in model.model_fields)
    # The deciding code can only read attributes: the models have no methods it could call instead.
    assert not {n for n, v in vars(model).items() if callable(v) and not n.startswith("_")}


def test_a_stand_in_cannot_be_written_through_a_session(db: Database) -> None:
    row = hotpath._row(Grant, **dict.fromkeys(Grant.model_fields))
    with db.session() as session, pytest.raises(Exception, match=r"(?i)not mapped|no mapper|unmapped"):
        session.add(row)


def test_the_lean_reads_give_every_field(db: Database) -> None:
    # A stand-in reads as model_construct only when every field is named: the SQL must read them all.
    seen: dict[type[SQLModel], set[str]] = {}
    original = hotpath._row

    def recording(cls: type[Any], /, **values: Any) -> Any:
        seen[cls] = set(values)
        return original(cls, **values)

    lean = hotpath.LeanReads(db)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hotpath, "_row", recording)
        patch.setattr(lean, "_one", lambda sql, params: (*GRANT_ROW, *RECORD_ROW))
        prefetch = lean.prefetch("inkomen")
        assert prefetch(VERIFIED) is not None
        resident, record, version = prefetch.rows_of("g", "inkomen")
    lean.close()
    assert resident is not None and record is not None and version is not None
    for model in (Grant, Resident, Record, RecordVersion):
        assert seen[model] == set(model.model_fields), model.__name__


def test_the_statements_read_the_columns_the_rows_are_built_from(db: Database) -> None:
    # GRANT_COLUMNS splits the record read's row: it must be where the grant's columns end.
    lean = hotpath.LeanReads(db)
    connection = lean._take()
    cursor = connection.cursor()
    cursor.execute(lean.grant_sql, ("j", "g"))
    grant_width = len(cursor.description)
    cursor.execute(lean.grant_and_record_sql, ("j", "inkomen", "g"))
    both_width = len(cursor.description)
    cursor.close()
    connection.close()
    lean.close()
    assert grant_width == hotpath.GRANT_COLUMNS == len(GRANT_ROW)
    assert both_width == hotpath.GRANT_COLUMNS + len(RECORD_ROW)


def test_the_record_reads_grant_reads_as_the_grant_look_up(db: Database) -> None:
    lean = hotpath.LeanReads(db)
    rows = {lean.grant_sql: GRANT_ROW, lean.grant_and_record_sql: (*GRANT_ROW, *RECORD_ROW)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lean, "_one", lambda sql, params: rows[sql])
        alone = lean.grant(VERIFIED)
        prefetch = lean.prefetch("inkomen")
        together = prefetch(VERIFIED)
    lean.close()
    assert alone is not None and together is not None
    assert alone[0].__dict__ == together[0].__dict__ and alone[1:] == together[1:]
    resident, record, version = prefetch.rows_of("g", "inkomen")
    assert resident is not None and (resident.id, resident.tenant_id) == ("r", "t")
    assert record is not None and (record.id, record.category, record.resident_id) == ("rec", "inkomen", "r")
    assert version is not None and (version.record_id, version.ciphertext) == ("rec", b"c")
    # The rows are only for the grant and category they were read with.
    for grant_id, category in (("another-grant", "inkomen"), ("g", "zorg")):
        with pytest.raises(LookupError):
            prefetch.rows_of(grant_id, category)
    with pytest.raises(LookupError):
        lean.prefetch("inkomen").rows_of("g", "inkomen")  # a fetcher that never ran


def test_the_resident_of_another_tenant_is_not_read_with_a_grant(db: Database) -> None:
    lean = hotpath.LeanReads(db)
    prefetch = lean.prefetch("inkomen")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lean, "_one", lambda sql, params: (*GRANT_ROW, "r", "other-tenant", *RECORD_ROW[2:]))
        assert prefetch(VERIFIED) is not None
    lean.close()
    assert prefetch.rows == (None, None, None)


def test_remembered_timestamps_read_as_the_column_type_reads_them() -> None:
    # SQLite gives naive UTC text, PostgreSQL aware datetimes in any zone; both become aware UTC,
    # and a value read again (now from the cache) is the same instant.
    from datetime import timedelta, timezone

    amsterdam = timezone(timedelta(hours=1))
    for raw, expected in (
        ("2026-11-26 03:00:00.000000", NOW),
        (NOW.astimezone(amsterdam), NOW),
        (datetime(2026, 11, 26, 3, 0), NOW),
    ):
        first, again = hotpath._time(raw), hotpath._time(raw)
        assert first == again == expected
        assert first is not None and first.tzinfo is UTC
    assert hotpath._time(None) is None


def test_remembered_category_lists_are_fresh_lists() -> None:
    first = hotpath._json('["inkomen", "zorg"]')
    first.append("changed")  # a row's list is its own: changing it changes no other row
    assert hotpath._json('["inkomen", "zorg"]') == ["inkomen", "zorg"]
    assert hotpath._json(["a"]) == ["a"]


def test_the_read_answer_is_the_declared_response_models_json() -> None:
    from pydantic import TypeAdapter

    from kluis.api.records import RECORD_BODY_JSON, RecordBody, RecordPublic

    body: RecordBody = {
        "category": "inkomen",
        "version": 3,
        "updated_at": datetime(2026, 12, 4, 8, 0, 0, 123456, tzinfo=UTC),
        "source": "brp",
        "data": {"naam": "Zoë", "bedrag": 2100.5, "lijst": [1, None, True], "leeg": {}},
    }
    declared = TypeAdapter(RecordPublic).dump_json(RecordPublic(**body))
    assert RECORD_BODY_JSON.dump_json(body) == declared


class _Statements:
    """Stands in for ``LeanReads._all_async``: records each batch, answers like PostgreSQL would."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[list[str], list[str], list[str]]] = []
        self.fail = fail

    async def __call__(
        self, sql: str, params: tuple[list[str], list[str], list[str]]
    ) -> list[tuple[Any, ...]]:
        assert sql == hotpath.GRANT_AND_RECORD_MANY_SQL
        self.batches.append(params)
        await asyncio.sleep(0.01)  # a round trip: requests arriving now form the next batch
        if self.fail:
            raise OSError("connection lost")
        # Rows for grants that exist ("g..."), numbered by place, in any order.
        return [
            (n, f"row of {jti}/{category}/{grant_id}")
            for n, (jti, category, grant_id) in reversed(list(enumerate(zip(*params, strict=True), start=1)))
            if grant_id.startswith("g")
        ]


def test_concurrent_look_ups_go_in_one_statement_and_each_gets_its_own_row(db: Database) -> None:
    lean = hotpath.LeanReads(db)
    statements = _Statements()

    async def scenario() -> tuple[list[Any], Any]:
        first = await asyncio.gather(
            *(lean.group.fetch(f"j{i}", "inkomen", f"g{i}" if i != 2 else "missing") for i in range(5))
        )
        # One in flight, three arriving meanwhile: they go together in the next statement.
        in_flight = asyncio.ensure_future(lean.group.fetch("j9", "zorg", "g9"))
        await asyncio.sleep(0.001)
        later = await asyncio.gather(*(lean.group.fetch(f"k{i}", "zorg", f"g{i}") for i in range(3)))
        return first, (await in_flight, later)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lean, "_all_async", statements)
        first, (alone, later) = asyncio.run(scenario())
    lean.close()
    assert [len(b[0]) for b in statements.batches] == [5, 1, 3]
    assert first == [(f"row of j{i}/inkomen/g{i}",) if i != 2 else None for i in range(5)]
    assert alone == ("row of j9/zorg/g9",)
    assert later == [(f"row of k{i}/zorg/g{i}",) for i in range(3)]


def test_a_failed_group_look_up_fails_every_request_in_it(db: Database) -> None:
    lean = hotpath.LeanReads(db)

    async def scenario() -> list[Any]:
        looked_up = (lean.group.fetch(f"j{i}", "inkomen", f"g{i}") for i in range(3))
        return list(await asyncio.gather(*looked_up, return_exceptions=True))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lean, "_all_async", _Statements(fail=True))
        results = asyncio.run(scenario())
    lean.close()
    assert [type(r) for r in results] == [OSError] * 3


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_the_group_statement_reads_the_columns_of_the_single_one(db: Database) -> None:
    # Same columns as GRANT_AND_RECORD_SQL after the request's number, on a real PostgreSQL.
    lean = hotpath.LeanReads(db)

    async def widths() -> tuple[int, list[tuple[Any, ...]]]:
        connection = await db.connect_async(autocommit=True)
        try:
            one = await connection.execute(lean.grant_and_record_sql, ("j", "inkomen", "g"))
            many = await connection.execute(hotpath.GRANT_AND_RECORD_MANY_SQL, (["j"], ["inkomen"], ["g"]))
            assert one.description is not None and many.description is not None
            return len(many.description) - len(one.description), await many.fetchall()
        finally:
            await connection.close()

    extra, rows = asyncio.run(widths())
    lean.close()
    assert extra == 1 and rows == []
