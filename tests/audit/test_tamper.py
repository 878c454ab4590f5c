"""The tamper suite: whatever a database administrator changes, verification names it.

Every case drops the append-only triggers (as a DBA would), damages the log, verifies, and rolls
back, all in one transaction; the untouched log verifies before and after. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, text

from audit import leaf, merkle, services
from audit.checkpoints import CheckpointVerifier, Ed25519CheckpointSigner
from audit.verify import VerifyResult, verify_log
from kluis.db import Database
from tests.audit.factories import CHECKPOINT_SIZES, TENANT, build_log, drop_triggers, event, forged_signature

Tamper = Callable[[Connection], Any]
SIZE = 13


@pytest.fixture
def log(db: Database, signer: Ed25519CheckpointSigner, verifier: CheckpointVerifier) -> Database:
    build_log(db, signer)
    assert verified(db, verifier).ok
    return db


def verified(
    db: Database, verifier: CheckpointVerifier, tamper: Tamper | None = None, **kwargs: Any
) -> VerifyResult:
    with db.session() as session:
        if tamper is not None:
            drop_triggers(session)
            tamper(session.connection())
        result = verify_log(session, TENANT, verifier, chunk=4, **kwargs)  # small chunks: cross borders
        session.rollback()
    return result


def one(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), {"t": TENANT, **params}).one()


def run(conn: Connection, sql: str, **params: Any) -> None:
    conn.execute(text(sql), {"t": TENANT, **params})


def sql(statement: str, **params: Any) -> Tamper:
    """A tamper that runs one statement."""

    def tamper(conn: Connection) -> None:
        run(conn, statement, **params)

    return tamper


def flip(value: bytes, position: int) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


def check(result: VerifyResult, kind: str, where: str, seq: int | None, tree_size: int | None = None) -> None:
    damage = result.damage
    assert damage is not None, "damage went unnoticed"
    found = (damage.kind, damage.where, damage.seq)
    assert found == (kind, where, seq), damage.describe()
    if tree_size is not None:
        assert damage.tree_size == tree_size, damage.describe()


def test_every_entry_byte_change_is_named(log: Database, verifier: CheckpointVerifier) -> None:
    rng = random.Random(9162)
    with log.read_session() as session:
        lengths = [
            len(row.leaf_bytes)
            for row in session.connection().execute(
                text("SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t ORDER BY seq"), {"t": TENANT}
            )
        ]
    for seq, length in enumerate(lengths):
        # The version byte, the first and last bytes of the JSON, and a few anywhere in between.
        for position in sorted({0, 1, length - 1, *(rng.randrange(length) for _ in range(3))}):

            def change(conn: Connection, seq: int = seq, position: int = position) -> None:
                (data,) = one(
                    conn, "SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t AND seq = :s", s=seq
                )
                run(
                    conn,
                    "UPDATE audit_entry SET leaf_bytes = :b WHERE tenant_id = :t AND seq = :s",
                    b=flip(bytes(data), position),
                    s=seq,
                )

            check(verified(log, verifier, change), "altered", "entry", seq)


def _column_changes(conn: Connection, seq: int) -> list[tuple[str, Any]]:
    row = one(conn, "SELECT * FROM audit_entry WHERE tenant_id = :t AND seq = :s", s=seq)._mapping
    changes: list[tuple[str, Any]] = [
        ("leaf_hash", flip(bytes(row["leaf_hash"]), 31)),
        ("time_ms", row["time_ms"] + 1),
    ]
    for name in leaf.COLUMNS[1:]:
        value = row[name]
        changes.append((name, "x" if value is None else value[:-1] + ("y" if value[-1] != "y" else "z")))
    return changes


def test_every_search_column_and_the_leaf_hash_are_covered(
    log: Database, verifier: CheckpointVerifier
) -> None:
    with log.read_session() as session:
        plans = {seq: _column_changes(session.connection(), seq) for seq in (0, 6, 12)}
    for seq, changes in plans.items():
        for column, value in changes:
            tamper = sql(
                f"UPDATE audit_entry SET {column} = :v WHERE tenant_id = :t AND seq = :s", v=value, s=seq
            )
            check(verified(log, verifier, tamper), "altered", "entry", seq)


def test_every_stored_node_is_checked(log: Database, verifier: CheckpointVerifier) -> None:
    with log.read_session() as session:
        nodes = (
            session.connection()
            .execute(text("SELECT level, idx FROM audit_node WHERE tenant_id = :t"), {"t": TENANT})
            .all()
        )
    assert len(nodes) == SIZE - SIZE.bit_count()
    for level, idx in nodes:
        where = {"t": TENANT, "l": level, "i": idx}

        def change(conn: Connection, byte: int, where: dict[str, Any] = where) -> None:
            (value,) = conn.execute(
                text("SELECT hash FROM audit_node WHERE tenant_id = :t AND level = :l AND idx = :i"), where
            ).one()
            conn.execute(
                text("UPDATE audit_node SET hash = :h WHERE tenant_id = :t AND level = :l AND idx = :i"),
                {**where, "h": flip(bytes(value), byte)},
            )

        for byte in (0, 17, 31):
            check(verified(log, verifier, partial(change, byte=byte)), "altered", "node", idx << level)
        delete = sql(
            "DELETE FROM audit_node WHERE tenant_id = :t AND level = :l AND idx = :i", l=level, i=idx
        )
        check(verified(log, verifier, delete), "missing", "node", idx << level)
    extra = sql("INSERT INTO audit_node VALUES (:t, 9, 0, :h)", h=b"\x00" * 32)
    check(verified(log, verifier, extra), "altered", "node", None)


def test_every_checkpoint_byte_and_column_is_checked(log: Database, verifier: CheckpointVerifier) -> None:
    rng = random.Random(6962)
    for size in CHECKPOINT_SIZES:
        with log.read_session() as session:
            (jws,) = one(
                session.connection(),
                "SELECT jws FROM audit_checkpoint WHERE tenant_id = :t AND tree_size = :n",
                n=size,
            )
        dots = [i for i, c in enumerate(jws) if c == "."]
        positions = {0, dots[0] - 1, dots[0], dots[0] + 1, dots[1] - 1, dots[1], dots[1] + 1, len(jws) - 1}
        positions |= {rng.randrange(len(jws)) for _ in range(8)}
        for position in sorted(positions):
            replacement = "B" if jws[position] != "B" else "C"
            forged = jws[:position] + replacement + jws[position + 1 :]
            tamper = sql(
                "UPDATE audit_checkpoint SET jws = :j WHERE tenant_id = :t AND tree_size = :n",
                j=forged,
                n=size,
            )
            check(verified(log, verifier, tamper), "bad_signature", "checkpoint", None, size)
        for column, expression in (
            ("root_hash", ":h"),
            ("timestamp_ms", "timestamp_ms + 1"),
            ("kid", "'checkpoint-other'"),
        ):
            tamper = sql(
                f"UPDATE audit_checkpoint SET {column} = {expression} "
                "WHERE tenant_id = :t AND tree_size = :n",
                h=merkle.leaf_hash(b"forged"),
                n=size,
            )
            check(verified(log, verifier, tamper), "altered", "checkpoint", None, size)
    moved = sql("UPDATE audit_checkpoint SET tree_size = 6 WHERE tenant_id = :t AND tree_size = 5")
    check(verified(log, verifier, moved), "altered", "checkpoint", None, 6)


def test_unknown_keys_fail_every_checkpoint(log: Database) -> None:
    from jwcrypto import jwk

    stranger = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="checkpoint-test-1")  # same kid, other key
    result = verified(log, CheckpointVerifier({"keys": [stranger.export_public(as_dict=True)]}))
    check(result, "bad_signature", "checkpoint", None, CHECKPOINT_SIZES[0])


def _swap(conn: Connection, a: int, b: int) -> None:
    for old, new in ((a, -1), (b, a), (-1, b)):
        run(conn, "UPDATE audit_entry SET seq = :n WHERE tenant_id = :t AND seq = :o", o=old, n=new)


def _state_at(conn: Connection, size: int) -> dict[str, Any]:
    edge = merkle.CompactRange()
    for (digest,) in conn.execute(
        text("SELECT leaf_hash FROM audit_entry WHERE tenant_id = :t AND seq < :n ORDER BY seq"),
        {"t": TENANT, "n": size},
    ):
        edge.append(bytes(digest))
    return {"n": size, "r": edge.root(), "f": edge.to_bytes()}


def _roll_back_state(conn: Connection, size: int) -> None:
    run(
        conn,
        "UPDATE audit_log_state SET size = :n, root_hash = :r, frontier = :f WHERE tenant_id = :t",
        **_state_at(conn, size),
    )


def _truncate(conn: Connection, size: int, *, cover_tracks: bool) -> None:
    """Delete the tail; with ``cover_tracks`` also its nodes, the state and newer stored checkpoints."""
    if cover_tracks:
        _roll_back_state(conn, size)
        for level in range(1, 8):
            run(
                conn,
                "DELETE FROM audit_node WHERE tenant_id = :t AND level = :l AND (idx + 1) * :w > :n",
                l=level,
                w=1 << level,
                n=size,
            )
    run(conn, "DELETE FROM audit_entry WHERE tenant_id = :t AND seq >= :n", n=size)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        pytest.param(
            lambda c: run(c, "DELETE FROM audit_entry WHERE tenant_id = :t AND seq = 4"),
            ("missing", "entry", 4),
            id="delete-middle",
        ),
        pytest.param(
            lambda c: run(c, "DELETE FROM audit_entry WHERE tenant_id = :t AND seq = 0"),
            ("missing", "entry", 0),
            id="delete-first",
        ),
        pytest.param(
            lambda c: run(c, "DELETE FROM audit_entry WHERE tenant_id = :t AND seq = 12"),
            ("truncated", "entry", 12),
            id="delete-last",
        ),
        pytest.param(lambda c: _swap(c, 3, 8), ("reordered", "entry", 3), id="swap"),
        pytest.param(lambda c: _swap(c, 11, 12), ("reordered", "entry", 11), id="swap-neighbours"),
        pytest.param(
            lambda c: _truncate(c, 9, cover_tracks=False), ("truncated", "entry", 9), id="truncate-tail"
        ),
        pytest.param(
            lambda c: _truncate(c, 9, cover_tracks=True),
            ("truncated", "entry", 9),
            id="truncate-tail-and-state",
        ),
        pytest.param(lambda c: _roll_back_state(c, 8), ("rolled_back", "state", 8), id="roll-back-state"),
        pytest.param(
            lambda c: run(c, "UPDATE audit_log_state SET size = 8 WHERE tenant_id = :t"),
            ("rolled_back", "state", 8),
            id="roll-back-size",
        ),
        pytest.param(
            lambda c: run(
                c, "UPDATE audit_log_state SET root_hash = :h WHERE tenant_id = :t", h=b"\x00" * 32
            ),
            ("altered", "state", None),
            id="state-root",
        ),
        pytest.param(
            lambda c: run(c, "UPDATE audit_log_state SET size = 14 WHERE tenant_id = :t"),
            ("truncated", "entry", 13),
            id="state-ahead",
        ),
        pytest.param(
            lambda c: run(
                c, "UPDATE audit_entry SET tenant_id = 'elsewhere' WHERE tenant_id = :t AND seq = 2"
            ),
            ("missing", "entry", 2),
            id="entry-moved-away",
        ),
    ],
)
def test_structural_damage_is_named(
    log: Database, verifier: CheckpointVerifier, tamper: Tamper, expected: tuple[str, str, int | None]
) -> None:
    check(verified(log, verifier, tamper), *expected)
    assert verified(log, verifier).ok  # the rollback restored everything


def _rewrite_consistently(conn: Connection, seq: int) -> None:
    """The careful administrator: a different entry at ``seq`` with every hash, node and the state
    recomputed. Only a signed checkpoint can tell."""
    rows = conn.execute(
        text("SELECT seq, leaf_bytes FROM audit_entry WHERE tenant_id = :t ORDER BY seq"), {"t": TENANT}
    ).all()
    forged = leaf.encode_leaf(seq, event(seq, department="forged"))
    leaves = [forged if r.seq == seq else bytes(r.leaf_bytes) for r in rows]
    columns = dict(zip(leaf.COLUMNS, leaf.columns(leaf.parse(forged)), strict=True))
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    run(
        conn,
        f"UPDATE audit_entry SET leaf_bytes = :b, leaf_hash = :h, {assignments} "
        "WHERE tenant_id = :t AND seq = :s",
        b=forged,
        h=merkle.leaf_hash(forged),
        s=seq,
        **columns,
    )
    edge = merkle.CompactRange()
    for data in leaves:
        for level, index, value in edge.append(merkle.leaf_hash(data)):
            run(
                conn,
                "UPDATE audit_node SET hash = :h WHERE tenant_id = :t AND level = :l AND idx = :i",
                h=value,
                l=level,
                i=index,
            )
    run(
        conn,
        "UPDATE audit_log_state SET root_hash = :r, frontier = :f WHERE tenant_id = :t",
        r=edge.root(),
        f=edge.to_bytes(),
    )


def test_a_consistent_rewrite_is_caught_by_the_next_checkpoint(
    log: Database, verifier: CheckpointVerifier
) -> None:
    check(verified(log, verifier, lambda c: _rewrite_consistently(c, 7)), "altered", "log", 5, 11)
    check(verified(log, verifier, lambda c: _rewrite_consistently(c, 2)), "altered", "log", 0, 5)


def test_witnessed_checkpoints_catch_what_the_database_no_longer_shows(
    log: Database, verifier: CheckpointVerifier
) -> None:
    with log.read_session() as session:
        latest = services.latest_checkpoint(session, TENANT)
    assert latest is not None and latest.tree_size == SIZE

    def erase_tail(conn: Connection) -> None:
        _truncate(conn, 9, cover_tracks=True)
        run(conn, "DELETE FROM audit_checkpoint WHERE tenant_id = :t AND tree_size > 9")

    assert verified(log, verifier, erase_tail).ok  # the limit of the database alone
    check(verified(log, verifier, erase_tail, witnessed=[latest.jws]), "truncated", "entry", 9)
    check(
        verified(log, verifier, lambda c: _rewrite_consistently(c, 12), witnessed=[latest.jws]),
        "altered",
        "log",
        11,
        13,
    )
    result = verified(log, verifier, witnessed=[forged_signature(latest.jws)])
    check(result, "bad_signature", "checkpoint", None)
