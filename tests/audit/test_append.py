"""Appending: dense sequence numbers, the caller's transaction, fail closed, append-only tables."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit import leaf, merkle, services
from audit.errors import InvalidEventError, LogOriginError, LogStateError, UnknownLogError
from audit.models import ENTRY
from audit.schemas import Actor, TraceContext
from kluis.db import Database
from tests.audit import naive
from tests.audit.factories import ORIGIN, TENANT, drop_triggers, event, fill, stored_leaves

OTHER = "0b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e"


def test_sequence_numbers_are_dense_and_the_root_is_the_rfc_root(log_db: Database) -> None:
    appended = []
    with log_db.session() as session:
        appended.append(services.append(session, event(0)))
        appended.extend(services.append_many(session, [event(i) for i in range(1, 6)]))
        session.commit()
    with log_db.session() as session:
        appended.extend(services.append_many(session, [event(i) for i in range(6, 13)]))
        session.commit()
    assert [a.seq for a in appended] == list(range(13))
    leaves = stored_leaves(log_db)
    assert [merkle.leaf_hash(x) for x in leaves] == [a.leaf_hash for a in appended]
    with log_db.read_session() as session:
        head = services.log_head(session, TENANT)
    assert (head.tree_size, head.origin) == (13, ORIGIN)
    assert head.root_hash == naive.mth(tuple(leaves))


def test_leaf_bytes_are_stored_exactly_as_hashed_and_name_their_position(log_db: Database) -> None:
    fill(log_db, 3)
    for seq, data in enumerate(stored_leaves(log_db)):
        assert data == leaf.encode_leaf(seq, event(seq))
        assert leaf.decode_leaf(data)[0] == seq


def test_append_does_not_commit(log_db: Database) -> None:
    with log_db.session() as session:
        services.append(session, event(0))
        session.rollback()
    with log_db.session() as session:
        assert services.append(session, event(1)).seq == 0
        session.commit()
    assert len(stored_leaves(log_db)) == 1


def test_an_act_and_its_entry_commit_together(log_db: Database) -> None:
    """The entry rides in the caller's transaction: when the act fails, the entry is gone too."""
    with pytest.raises(RuntimeError), log_db.session() as session:
        services.append(session, event(0))
        raise RuntimeError("the act failed")
    assert stored_leaves(log_db) == []


def test_batches_of_several_tenants_keep_their_order(log_db: Database) -> None:
    with log_db.session() as session:
        services.ensure_log(session, OTHER, "kluis/other")
        appended = services.append_many(
            session, [event(0), event(1, tenant=OTHER), event(2), event(3, tenant=OTHER), event(4)]
        )
        session.commit()
    assert [a.seq for a in appended] == [0, 0, 1, 1, 2]
    assert [leaf.decode_leaf(x)[1].details["n"] for x in stored_leaves(log_db)] == [0, 2, 4]
    assert [leaf.decode_leaf(x)[1].details["n"] for x in stored_leaves(log_db, OTHER)] == [1, 3]


def test_ensure_log_is_idempotent_and_keeps_its_origin(log_db: Database) -> None:
    with log_db.session() as session:
        services.ensure_log(session, TENANT, ORIGIN)
        with pytest.raises(LogOriginError):
            services.ensure_log(session, TENANT, "kluis/elsewhere")


def test_unknown_tenants_and_invalid_events_fail_before_writing(log_db: Database) -> None:
    with log_db.session() as session:
        with pytest.raises(UnknownLogError):
            services.append(session, event(0, tenant=OTHER))
    bad = [
        event(0, name="Record Read"),
        event(0, trace=TraceContext("0" * 32, "1" * 16)),
        event(0, trace=TraceContext("A" * 32, "1" * 16)),
        event(0, status="maybe"),
        event(0, decision="perhaps"),
        event(0, actor=Actor(type="robot", id="x")),  # type: ignore[arg-type]
        event(0, actor=Actor(type="client", id="line\nbreak")),
        event(0, data_subject_id="x" * 129),
        event(0, details={"Bad Key": 1}),
        event(0, details={"n": 2**60}),
        event(0, details={"n": 1.5}),
        dataclasses.replace(event(0), start_time=event(0).start_time.replace(tzinfo=None)),
    ]
    for candidate in bad:
        with log_db.session() as session:
            with pytest.raises(InvalidEventError):
                services.append_many(session, [event(1), candidate])
    assert stored_leaves(log_db) == []


def test_the_log_tables_refuse_update_and_delete(log_db: Database) -> None:
    fill(log_db, 4)
    with log_db.session() as session:
        services.sign_checkpoint(session, TENANT, _Signer(), event(0).start_time)
        session.commit()
    statements = [
        "UPDATE audit_entry SET name = 'vault:record:written' WHERE seq = 1",
        "DELETE FROM audit_entry WHERE seq = 3",
        "UPDATE audit_node SET hash = hash",
        "DELETE FROM audit_node",
        "UPDATE audit_checkpoint SET jws = 'x'",
        "DELETE FROM audit_checkpoint",
        "DELETE FROM audit_log_state",
        "UPDATE audit_log_state SET size = 2",
        "UPDATE audit_log_state SET origin = 'kluis/elsewhere'",
    ]
    if log_db.dialect == "postgresql":
        statements += [
            f"TRUNCATE {t}" for t in ("audit_entry", "audit_node", "audit_checkpoint", "audit_log_state")
        ]
    for statement in statements:
        with log_db.session() as session, pytest.raises(DBAPIError):
            session.connection().execute(text(statement))
    # The state row itself may move forward (that is how appends work).
    fill(log_db, 1, start=4)


def test_a_rolled_back_state_makes_appends_fail_closed(log_db: Database) -> None:
    fill(log_db, 5)
    edge = merkle.CompactRange()
    for data in stored_leaves(log_db)[:3]:
        edge.append(merkle.leaf_hash(data))
    with log_db.session() as session:
        drop_triggers(session)  # (holds table locks until rollback: no other connection inside)
        session.connection().execute(
            text("UPDATE audit_log_state SET size = 3, root_hash = :r, frontier = :f"),
            {"r": edge.root(), "f": edge.to_bytes()},
        )
        with pytest.raises(LogStateError):
            services.append(session, event(5))


def test_a_mangled_state_row_makes_appends_fail_closed(log_db: Database) -> None:
    fill(log_db, 3)
    with log_db.session() as session:
        drop_triggers(session)
        session.connection().execute(text("UPDATE audit_log_state SET frontier = :f"), {"f": b"short"})
        with pytest.raises(LogStateError):
            services.append(session, event(3))


class _Signer:
    kid = "test"

    def sign(self, payload: bytes) -> str:
        return "not-a-jws"


def test_the_json_batch_reads_every_column_as_its_type() -> None:
    # PostgreSQL's append reads the rows out of a JSON parameter, casting each column by name:
    # the casts must be the columns' own types.
    from sqlalchemy import BigInteger, LargeBinary, SmallInteger, String

    from audit.models import NODE

    kinds = {BigInteger: "bigint", LargeBinary: "bytea", SmallInteger: "smallint", String: "text"}
    for table, columns, types in (
        (ENTRY, services._ENTRY_COLUMNS, services.ENTRY_TYPES),
        (NODE, services._NODE_COLUMNS, services.NODE_TYPES),
    ):
        assert len(columns) == len(types)
        for name, kind in zip(columns, types, strict=True):
            assert kinds[type(table.c[name].type)] == kind, name


def test_a_large_batch_stores_every_value_as_given(log_db: Database) -> None:
    # Texts outside ASCII, empty and missing values, a batch larger than any group commit's.
    events = [
        event(
            i,
            reason="geweigerd: één €-bedrag 💶" if i % 7 == 0 else None,
            department=None if i % 2 else "wmo",
        )
        for i in range(300)
    ]
    with log_db.session() as session:
        appended = services.append_many(session, events)
        session.commit()
    assert [a.seq for a in appended] == list(range(300))
    with log_db.read_session() as session:
        rows = session.connection().execute(
            ENTRY.select().where(ENTRY.c.tenant_id == TENANT).order_by(ENTRY.c.seq)
        )
        for row, item, entry in zip(rows, events, appended, strict=True):
            assert bytes(row.leaf_bytes) == leaf.encode_leaf(row.seq, item)
            assert bytes(row.leaf_hash) == entry.leaf_hash
            stored = tuple(getattr(row, name) for name in leaf.COLUMNS)
            assert stored == leaf.columns(leaf.leaf_object(row.seq, item))
    with log_db.read_session() as session:
        assert services.log_head(session, TENANT).root_hash == naive.mth(tuple(stored_leaves(log_db)))
