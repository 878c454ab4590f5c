"""Signing checkpoints: on growth, never inconsistent with the previous one, never back in time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from audit import merkle, services
from audit.checkpoints import CheckpointVerifier, Ed25519CheckpointSigner
from audit.errors import CheckpointRefusedError, LogStateError, UnknownLogError
from kluis.db import Database
from tests.audit.factories import ORIGIN, START, TENANT, drop_triggers, fill, stored_leaves
from tests.audit.test_append import OTHER


def test_checkpoints_sign_the_tree_and_only_when_it_grew(
    log_db: Database, signer: Ed25519CheckpointSigner, verifier: CheckpointVerifier
) -> None:
    fill(log_db, 6)
    with log_db.session() as session:
        first = services.sign_checkpoint(session, TENANT, signer, START)
        again = services.sign_checkpoint(session, TENANT, signer, START + timedelta(seconds=5))
        session.commit()
    assert again == first
    verified = verifier.verify(first.jws)
    assert verified.kid == signer.kid
    assert (verified.payload.origin, verified.payload.tree_size) == (ORIGIN, 6)
    with log_db.read_session() as session:
        assert verified.payload.root_hash == first.root_hash == services.log_head(session, TENANT).root_hash
        assert services.latest_checkpoint(session, TENANT) == first
    assert set(first.to_json()) >= {"tree_size", "root_hash", "jws"}


def test_checkpoint_times_never_go_back(log_db: Database, signer: Ed25519CheckpointSigner) -> None:
    fill(log_db, 2)
    with log_db.session() as session:
        first = services.sign_checkpoint(session, TENANT, signer, START)
        session.commit()
    fill(log_db, 2, start=2)
    with log_db.session() as session:
        second = services.sign_checkpoint(session, TENANT, signer, START - timedelta(hours=1))
        session.commit()
    assert second.tree_size == 4 and second.timestamp == first.timestamp
    with log_db.read_session() as session:
        assert [c.tree_size for c in services.checkpoints(session, TENANT)] == [2, 4]
        assert [c.tree_size for c in services.checkpoints(session, TENANT, after=2)] == [4]


def test_pending_checkpoints_cover_every_log_that_grew(
    log_db: Database, signer: Ed25519CheckpointSigner
) -> None:
    with log_db.session() as session:
        services.ensure_log(session, OTHER, "kluis/other")
        session.commit()
    with log_db.read_session() as session:
        assert services.pending_checkpoints(session) == []  # empty logs need no checkpoint
    fill(log_db, 3)
    fill(log_db, 1, tenant=OTHER)
    with log_db.session() as session:
        assert services.pending_checkpoints(session) == sorted([TENANT, OTHER])
        signed = services.sign_pending_checkpoints(session, signer, START)
        session.commit()
    assert sorted((c.origin, c.tree_size) for c in signed) == [(ORIGIN, 3), ("kluis/other", 1)]
    fill(log_db, 1, start=3)
    with log_db.read_session() as session:
        assert services.pending_checkpoints(session) == [TENANT]


def test_refuses_to_contradict_the_previous_checkpoint(
    log_db: Database, signer: Ed25519CheckpointSigner
) -> None:
    fill(log_db, 5)
    with log_db.session() as session:
        services.sign_checkpoint(session, TENANT, signer, START)
        session.commit()
    fill(log_db, 3, start=5)
    with log_db.session() as session:
        drop_triggers(session)
        session.connection().execute(
            text("UPDATE audit_checkpoint SET root_hash = :h"), {"h": merkle.leaf_hash(b"other history")}
        )
        with pytest.raises(CheckpointRefusedError):
            services.sign_checkpoint(session, TENANT, signer, START)


def test_refuses_a_log_that_shrank_since_its_checkpoint(
    log_db: Database, signer: Ed25519CheckpointSigner
) -> None:
    fill(log_db, 6)
    with log_db.session() as session:
        services.sign_checkpoint(session, TENANT, signer, START)
        session.commit()
    edge = merkle.CompactRange()
    for data in stored_leaves(log_db)[:4]:
        edge.append(merkle.leaf_hash(data))
    with log_db.session() as session:
        drop_triggers(session)
        session.connection().execute(
            text("UPDATE audit_log_state SET size = 4, root_hash = :r, frontier = :f"),
            {"r": edge.root(), "f": edge.to_bytes()},
        )
        with pytest.raises(CheckpointRefusedError):
            services.sign_checkpoint(session, TENANT, signer, START)


def test_refuses_a_state_the_stored_nodes_do_not_give(
    log_db: Database, signer: Ed25519CheckpointSigner
) -> None:
    fill(log_db, 6)
    with log_db.session() as session:
        drop_triggers(session)
        session.connection().execute(
            text("UPDATE audit_node SET hash = :h WHERE level = 2"), {"h": b"\x00" * 32}
        )
        with pytest.raises(LogStateError):
            services.sign_checkpoint(session, TENANT, signer, START)
    with log_db.session() as session, pytest.raises(UnknownLogError):
        services.sign_checkpoint(session, OTHER, signer, START)
