"""Proofs from the database, shaped like the RFC 6962 log API, checked against the RFC oracle."""

from __future__ import annotations

import base64
import math

import pytest
from sqlalchemy import event as sa_event

from audit import merkle, services
from audit.errors import ProofRequestError, UnknownLogError
from kluis.db import Database
from tests.audit import naive
from tests.audit.factories import TENANT, fill, stored_leaves

SIZE = 21


def test_every_inclusion_and_consistency_proof_of_a_small_log(log_db: Database) -> None:
    fill(log_db, SIZE, batch=4)
    leaves = tuple(stored_leaves(log_db))
    with log_db.read_session() as session:
        assert services.root_at(session, TENANT, 0) == merkle.EMPTY_ROOT
        roots = {n: services.root_at(session, TENANT, n) for n in range(1, SIZE + 1)}
        assert all(roots[n] == naive.mth(leaves[:n]) for n in roots)
        for size in range(1, SIZE + 1):
            for seq in range(size):
                proof = services.inclusion_proof(session, TENANT, seq, size)
                assert list(proof.audit_path) == naive.path(seq, leaves[:size])
                merkle.verify_inclusion(
                    seq, size, merkle.leaf_hash(leaves[seq]), proof.audit_path, roots[size]
                )
            for first in range(size + 1):
                consistency = services.consistency_proof(session, TENANT, first, size)
                assert list(consistency.consistency) == naive.proof(first, leaves[:size])
                if first:
                    merkle.verify_consistency(first, size, roots[first], roots[size], consistency.consistency)


def test_proofs_read_only_log_n_stored_hashes(log_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 300
    fill(log_db, size, batch=100)
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    wanted: list[int] = []
    original = services.stored_subtrees

    def spy(conn, tenant_id, nodes):
        wanted.append(len(nodes))
        return original(conn, tenant_id, nodes)

    monkeypatch.setattr(services, "stored_subtrees", spy)
    sa_event.listen(log_db.read_engine, "before_cursor_execute", count)
    try:
        with log_db.read_session() as session:
            statements.clear()
            services.inclusion_proof(session, TENANT, 137, size)
            services.consistency_proof(session, TENANT, 77, size)
    finally:
        sa_event.remove(log_db.read_engine, "before_cursor_execute", count)
    # Per proof: one read of the log state (SQLAlchemy) and one statement of primary-key look-ups
    # (``stored_subtrees``, plain SQL) for at most 2·log2(n) stored hashes.
    assert len(statements) == 2 and all("audit_log_state" in s for s in statements)
    assert len(wanted) == 2 and max(wanted) <= 2 * math.ceil(math.log2(size))


def test_entries_and_proofs_have_the_rfc6962_shapes(log_db: Database) -> None:
    fill(log_db, 5)
    with log_db.read_session() as session:
        entry = services.get_entry(session, TENANT, 3)
        assert entry is not None and services.get_entry(session, TENANT, 5) is None
        doc = entry.to_json()
        assert set(doc) == {"seq", "leaf_bytes", "leaf_hash"}
        assert merkle.leaf_hash(base64.b64decode(str(doc["leaf_bytes"]))) == base64.b64decode(
            str(doc["leaf_hash"])
        )
        assert [e.seq for e in services.get_entries(session, TENANT, 1, 4)] == [1, 2, 3]
        assert set(services.inclusion_proof(session, TENANT, 3, 5).to_json()) == {
            "leaf_index",
            "tree_size",
            "audit_path",
        }
        assert set(services.consistency_proof(session, TENANT, 2, 5).to_json()) == {
            "first",
            "second",
            "consistency",
        }


def test_proofs_outside_the_log_are_refused(log_db: Database) -> None:
    fill(log_db, 4)
    with log_db.read_session() as session:
        for args in [(4, 4), (0, 5), (-1, 3), (2, 1)]:
            with pytest.raises(ProofRequestError):
                services.inclusion_proof(session, TENANT, *args)
        for args in [(3, 2), (0, 5), (-1, 2)]:
            with pytest.raises(ProofRequestError):
                services.consistency_proof(session, TENANT, *args)
        with pytest.raises(ProofRequestError):
            services.root_at(session, TENANT, 5)
        with pytest.raises(UnknownLogError):
            services.inclusion_proof(session, "no-such-tenant", 0, 1)
