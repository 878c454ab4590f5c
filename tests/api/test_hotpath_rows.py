"""The lean read path's rows are what ``model_construct`` would build: every field given, the same
values, usable like rows the ORM loaded (kluis/hotpath.py ``_row``)."""

from __future__ import annotations

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
    # _row is only model_construct when every field is named: the SQL above it must read them all.
    seen: dict[type[SQLModel], set[str]] = {}
    original = hotpath._row

    def recording(cls: type[Any], /, **values: Any) -> Any:
        seen[cls] = set(values)
        return original(cls, **values)

    lean = hotpath.LeanReads(db)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hotpath, "_row", recording)
        grant_sql, record_sql = lean.grant_sql, lean.record_sql
        row = GRANT_ROW
        patch.setattr(lean, "_one", lambda sql, params: row if sql == grant_sql else None)
        assert lean.grant(VERIFIED) is not None
        record_row = RECORD_ROW
        patch.setattr(lean, "_one", lambda sql, params: record_row if sql == record_sql else None)
        resident, record, version = lean.record("t", "r", "inkomen")
    lean.close()
    assert resident is not None and record is not None and version is not None
    for model in (Grant, Resident, Record, RecordVersion):
        assert seen[model] == set(model.model_fields), model.__name__


def test_one_statement_reads_what_the_two_look_ups_read(db: Database) -> None:
    lean = hotpath.LeanReads(db)
    rows = {
        lean.grant_sql: GRANT_ROW,
        lean.record_sql: RECORD_ROW,
        lean.grant_and_record_sql: GRANT_ROW + RECORD_ROW,
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lean, "_one", lambda sql, params: rows[sql])
        separate = lean.grant(VERIFIED), lean.record("t", "r", "inkomen")
        prefetch = lean.prefetch("inkomen")
        together = prefetch(VERIFIED), prefetch.rows_for("t", "r", "inkomen")
        asked: list[str] = []

        def counting(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
            asked.append(sql)
            return rows[sql]

        patch.setattr(lean, "_one", counting)
        # Rows of another grant or category are never handed out: those get a look-up of their own.
        other = prefetch.rows_for("t", "r", "zorg")
        assert asked == [lean.record_sql] and other[1] is not None and other[1].category == "zorg"
        prefetch.rows_for("t", "other", "inkomen")
        assert asked == [lean.record_sql, lean.record_sql]
    lean.close()
    assert separate[0] is not None and together[0] is not None
    assert [m.__dict__ for m in separate[0][:1]] == [m.__dict__ for m in together[0][:1]]
    assert separate[0][1:] == together[0][1:]
    assert dicts(separate[1]) == dicts(together[1])


def dicts(rows: tuple[Any, ...]) -> list[Any]:
    return [row.__dict__ if row is not None else None for row in rows]


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
