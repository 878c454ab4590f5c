"""Incremental verification: the walk starts at a signed checkpoint instead of at entry 0.

It must find whatever a full walk finds after that checkpoint, check the checkpoint's signature and
the stored edge of its tree against its signed root, and it does not see a change before the
checkpoint (the full walk does: the scheduled job runs both). Same log and tampering as the tamper
suite (checkpoints at 5, 11 and 13); SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Connection

from audit import services
from audit.checkpoints import CheckpointPayload, CheckpointVerifier, Ed25519CheckpointSigner
from kluis.db import Database
from tests.audit.factories import ORIGIN, TENANT, forged_signature
from tests.audit.test_tamper import (
    SIZE,
    Tamper,
    _rewrite_consistently,
    _state_at,
    check,
    flip,
    log,
    one,
    run,
    sql,
    verified,
)

__all__ = ["log"]  # the tamper suite's fixture, used here too


def flipped_leaf(seq: int) -> Tamper:
    def change(conn: Connection) -> None:
        (data,) = one(conn, "SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t AND seq = :s", s=seq)
        run(
            conn,
            "UPDATE audit_entry SET leaf_bytes = :b WHERE tenant_id = :t AND seq = :s",
            b=flip(bytes(data), 5),
            s=seq,
        )

    return change


def flipped_node(level: int, idx: int) -> Tamper:
    where = {"l": level, "i": idx}

    def change(conn: Connection) -> None:
        (value,) = one(
            conn, "SELECT hash FROM audit_node WHERE tenant_id = :t AND level = :l AND idx = :i", **where
        )
        run(
            conn,
            "UPDATE audit_node SET hash = :h WHERE tenant_id = :t AND level = :l AND idx = :i",
            h=flip(bytes(value), 0),
            **where,
        )

    return change


def test_an_intact_log_verifies_from_the_largest_checkpoint_at_or_below_since(
    log: Database, verifier: CheckpointVerifier
) -> None:
    full = verified(log, verifier)
    assert full.ok and full.since == 0 and full.entries == SIZE
    for since, base in ((13, 13), (12, 11), (11, 11), (7, 5), (5, 5), (4, 0), (0, 0)):
        result = verified(log, verifier, since=since)
        assert result.ok, (since, result.damage)
        assert (result.since, result.entries, result.root_hash) == (base, SIZE, full.root_hash), since
        assert result.latest_checkpoint == 13 and result.to_json()["since"] == base
    # From checkpoint 5 it checks 11 and 13 itself, and counts the one it started from.
    assert verified(log, verifier, since=5).checkpoints == full.checkpoints


def test_damage_after_the_checkpoint_is_found_as_by_a_full_walk(
    log: Database, verifier: CheckpointVerifier
) -> None:
    for seq in (5, 8, 12):
        check(verified(log, verifier, flipped_leaf(seq), since=5), "altered", "entry", seq)
    # The subtree of leaves 10 and 11 is completed by the walk from checkpoint 11, with leaf 10
    # taken from the checkpoint's edge: it is compared like every other.
    check(verified(log, verifier, flipped_node(1, 5), since=11), "altered", "node", 10)
    # A state rolled back or a log truncated after the checkpoint, as in a full walk.
    rolled_back = sql("UPDATE audit_log_state SET size = 12 WHERE tenant_id = :t")
    check(verified(log, verifier, rolled_back, since=11), "rolled_back", "state", 12)
    removed = sql("DELETE FROM audit_entry WHERE tenant_id = :t AND seq = 12")
    assert not verified(log, verifier, removed, since=11).ok
    # Stored subtrees beyond the tree, at a level it has and at one it has not.
    for level, idx in ((1, 6), (9, 0), (0, 3), (2, -1)):
        extra = sql("INSERT INTO audit_node VALUES (:t, :l, :i, :h)", l=level, i=idx, h=b"\x00" * 32)
        check(verified(log, verifier, extra, since=11), "altered", "node", None)


def test_the_starting_checkpoint_and_its_stored_edge_are_checked(
    log: Database, verifier: CheckpointVerifier
) -> None:
    # Checkpoint 11's tree is 8 + 2 + 1 leaves: the subtrees (3, 0) and (1, 4) and leaf 10.
    for level, idx in ((3, 0), (1, 4)):
        check(verified(log, verifier, flipped_node(level, idx), since=11), "altered", "node", None, 11)
        gone = sql("DELETE FROM audit_node WHERE tenant_id = :t AND level = :l AND idx = :i", l=level, i=idx)
        check(verified(log, verifier, gone, since=11), "missing", "node", None, 11)
    leaf_hash = sql("UPDATE audit_entry SET leaf_hash = :h WHERE tenant_id = :t AND seq = 10", h=b"\x01" * 32)
    check(verified(log, verifier, leaf_hash, since=11), "altered", "node", None, 11)

    def forged(conn: Connection) -> None:
        (jws,) = one(conn, "SELECT jws FROM audit_checkpoint WHERE tenant_id = :t AND tree_size = 11")
        run(
            conn,
            "UPDATE audit_checkpoint SET jws = :j WHERE tenant_id = :t AND tree_size = 11",
            j=forged_signature(jws),
        )

    check(verified(log, verifier, forged, since=11), "bad_signature", "checkpoint", None, 11)


def test_a_change_before_the_checkpoint_needs_the_full_walk(
    log: Database, verifier: CheckpointVerifier
) -> None:
    change = flipped_leaf(2)
    assert verified(log, verifier, change, since=11).ok  # not read: that is what makes it cheap
    check(verified(log, verifier, change), "altered", "entry", 2)


def _sign_stored_tree(conn: Connection, signer: Ed25519CheckpointSigner, size: int) -> str:
    """What an administrator with the signer does: a checkpoint of the first ``size`` stored leaves."""
    root = _state_at(conn, size)["r"]
    payload = CheckpointPayload(
        origin=ORIGIN, tree_size=size, root_hash=root, timestamp_ms=1_800_000_000_000 + size
    )
    jws = signer.sign(payload.to_bytes())
    run(
        conn,
        "INSERT INTO audit_checkpoint VALUES (:t, :n, :r, :ms, :k, :j)",
        n=size,
        r=root,
        ms=payload.timestamp_ms,
        k=signer.kid,
        j=jws,
    )
    return jws


def test_witnessed_checkpoints_are_never_skipped(
    log: Database, verifier: CheckpointVerifier, signer: Ed25519CheckpointSigner
) -> None:
    with log.read_session() as session:
        kept = {c.tree_size: c.jws for c in services.checkpoints(session, TENANT)}

    def rewritten_and_signed_again(conn: Connection) -> None:
        _rewrite_consistently(conn, 2)
        run(conn, "DELETE FROM audit_checkpoint WHERE tenant_id = :t")
        _sign_stored_tree(conn, signer, 13)

    assert verified(log, verifier, rewritten_and_signed_again, since=13).ok  # the database alone
    # A witnessed checkpoint at or below the starting one makes the walk start below it.
    for size in (5, 13):
        result = verified(log, verifier, rewritten_and_signed_again, since=13, witnessed=[kept[size]])
        damage = result.damage
        assert result.since < size and damage is not None
        assert (damage.kind, damage.where, damage.tree_size) == ("altered", "log", size), damage


def test_a_log_that_ends_before_its_starting_checkpoint_is_truncated(
    log: Database, verifier: CheckpointVerifier, signer: Ed25519CheckpointSigner
) -> None:
    def cut_below_a_checkpoint_of_8(conn: Connection) -> None:
        _sign_stored_tree(conn, signer, 8)
        run(conn, "DELETE FROM audit_checkpoint WHERE tenant_id = :t AND tree_size > 8")
        run(conn, "DELETE FROM audit_entry WHERE tenant_id = :t AND seq >= 6")
        run(conn, "DELETE FROM audit_node WHERE tenant_id = :t AND idx * (1 << level) >= 8")
        state = _state_at(conn, 6)
        run(
            conn,
            "UPDATE audit_log_state SET size = :n, root_hash = :r, frontier = :f WHERE tenant_id = :t",
            **state,
        )

    check(verified(log, verifier, cut_below_a_checkpoint_of_8), "truncated", "entry", 6)
    check(verified(log, verifier, cut_below_a_checkpoint_of_8, since=8), "truncated", "entry", 6, 8)
