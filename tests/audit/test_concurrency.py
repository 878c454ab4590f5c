"""Several processes appending at once, and writers killed with SIGKILL at random moments.

Both run on SQLite and PostgreSQL: the count is exact, sequence numbers are dense and unique, the
root equals an independent recomputation, and no acknowledged entry is ever lost or torn.
"""

from __future__ import annotations

import random
import signal
import time
from multiprocessing.synchronize import Event
from typing import Any

import pytest

from audit import leaf, services
from audit.checkpoints import CheckpointVerifier
from audit.verify import verify_log
from kluis.db import Database
from tests.audit import naive
from tests.audit.factories import TENANT, event, stored_leaves
from tests.audit.writer import FORK, Writer


def start_writers(url: str, plan: list[tuple[int, int]], go: Event, first_id: int = 0) -> list[Writer]:
    """One forked writer per ``(count, batch)``; returns once all are connected and waiting."""
    writers = [Writer(url, TENANT, first_id + i, count, batch, go) for i, (count, batch) in enumerate(plan)]
    for writer in writers:
        writer.wait_ready()
    return writers


def acknowledged(output: str) -> list[tuple[int, int, int]]:
    """``(seq, writer, n)`` of every complete ack line (a killed writer may leave half a line)."""
    acks = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ack":
            acks.append((int(parts[1]), int(parts[2]), int(parts[3])))
    return acks


def check_log(db: Database, verifier: CheckpointVerifier) -> list[dict[str, Any]]:
    """Dense, unique, the RFC root, and a clean verification. Returns the entry objects."""
    leaves = stored_leaves(db)
    objects = [leaf.parse(data) for data in leaves]
    assert [o["seq"] for o in objects] == list(range(len(objects)))
    marks = [(o["details"]["writer"], o["details"]["n"]) for o in objects if "writer" in o["details"]]
    assert len(marks) == len(set(marks)), "an entry was written twice"
    with db.read_session() as session:
        head = services.log_head(session, TENANT)
        result = verify_log(session, TENANT, verifier)
    assert head.tree_size == len(leaves) and head.root_hash == naive.mth(tuple(leaves))
    assert result.ok, result.damage and result.damage.describe()
    return objects


def test_concurrent_writers_get_dense_unique_sequence_numbers(
    log_db: Database, verifier: CheckpointVerifier
) -> None:
    plan = [(40, 1), (40, 1), (40, 4), (40, 8)]
    go = FORK.Event()
    writers = start_writers(log_db.url, plan, go)
    go.set()
    outputs = [w.output() for w in writers]
    for w in writers:
        w.process.join(timeout=120)
    assert [w.process.exitcode for w in writers] == [0] * len(plan)
    acks = [a for out in outputs for a in acknowledged(out)]
    assert sorted(seq for seq, _, _ in acks) == list(range(sum(c for c, _ in plan)))
    objects = check_log(log_db, verifier)
    assert len(objects) == 160
    for seq, writer, n in acks:
        assert objects[seq]["details"] == {"writer": writer, "n": n}
    # Every writer's entries keep the order in which it wrote them.
    for writer in range(len(plan)):
        ns = [o["details"]["n"] for o in objects if o["details"].get("writer") == writer]
        assert ns == sorted(ns)


@pytest.mark.slow
def test_writers_killed_at_random_lose_nothing_acknowledged(
    log_db: Database, verifier: CheckpointVerifier
) -> None:
    rng = random.Random(20260303)
    acks: list[tuple[int, int, int]] = []
    for round_ in range(2):
        go = FORK.Event()
        writers = start_writers(
            log_db.url, [(100_000, 1), (100_000, 3), (100_000, 7)], go, first_id=3 * round_
        )
        go.set()
        for writer in writers:
            time.sleep(rng.uniform(0.05, 0.4))  # mid-transaction, between two, or while committing
            writer.process.kill()
        for writer in writers:
            acks.extend(acknowledged(writer.output()))
            writer.process.join(timeout=60)
            assert writer.process.exitcode == -signal.SIGKILL
        objects = check_log(log_db, verifier)  # no torn state after the kills
        assert acks, "the writers died before writing anything: the test proved nothing"
        for seq, writer_id, n in acks:
            assert objects[seq]["details"] == {"writer": writer_id, "n": n}, "an acknowledged entry was lost"
    with log_db.session() as session:  # the log still takes entries after the crashes
        services.append(session, event(0))
        session.commit()
    check_log(log_db, verifier)
