"""Checkpoint signing in the shell (``kluis.wiring.sign_checkpoint_audited``), used by the periodic
signer and by ``GET /api/v1/audit/checkpoint``: every new checkpoint is one audit entry that the
checkpoint itself covers, nothing is signed or written when nothing is new, the periodic signer goes
quiet, concurrent signers agree, and a log that cannot be signed is reported without holding up the
others. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from audit import leaf, tags
from audit import services as audit_log
from audit.checkpoints import CheckpointVerifier
from audit.errors import CheckpointRefusedError
from audit.models import CHECKPOINT
from audit.schemas import Actor, AuditEvent, Checkpoint, TraceContext
from kluis.app import sign_pending
from kluis.settings import Settings
from kluis.wiring import (
    CHECKPOINT_SIGNER,
    Services,
    build_services,
    initialise,
    sign_checkpoint_audited,
    utcnow,
)
from tests.e2e.test_consent_flow import operator


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(env="development", data_dir=tmp_path, database_url=db_url))
    initialise(built)
    try:
        yield built
    finally:
        built.close()


def town(services: Services, slug: str) -> str:
    with services.db.session() as s:
        return services.vault.create_tenant(s, operator(), slug, slug.title()).id  # entry 0


def append(services: Services, tenant_id: str, count: int = 1) -> None:
    now = utcnow()
    event = AuditEvent(
        tenant=tenant_id,
        name=tags.LOG_SEARCHED,
        actor=Actor(type="operator", id="cli:test"),
        trace=TraceContext.new(),
        start_time=now,
        end_time=now,
    )
    with services.db.session() as s:
        audit_log.append_many(s, [event] * count)
        s.commit()


def size(services: Services, tenant_id: str) -> int:
    with services.db.read_session() as s:
        return audit_log.log_head(s, tenant_id).tree_size


def entry(services: Services, tenant_id: str, seq: int) -> dict[str, Any]:
    with services.db.read_session() as s:
        found = audit_log.get_entry(s, tenant_id, seq)
    assert found is not None
    return leaf.parse(found.leaf_bytes)


def test_a_new_checkpoint_is_one_audit_entry_that_the_checkpoint_covers(services: Services) -> None:
    tenant = town(services, "gemeente-a")
    append(services, tenant, 3)
    trace = TraceContext.new()
    signed, new = sign_checkpoint_audited(services, tenant, utcnow(), trigger="request", trace=trace)
    assert new and signed.tree_size == 5 == size(services, tenant)  # 4 entries, then its own
    announced = entry(services, tenant, 4)
    assert announced["name"] == tags.CHECKPOINT_SIGNED
    assert announced["actor"] == {"type": "system", "id": CHECKPOINT_SIGNER.id, "on_behalf_of": None}
    assert announced["details"] == {"kid": signed.kid, "trigger": "request"}
    assert announced["trace_id"] == trace.trace_id
    with services.db.read_session() as s:
        verified = CheckpointVerifier(services.signing.public_jwks(s, "checkpoint")).verify(signed.jws)
        assert audit_log.root_at(s, tenant, 5) == signed.root_hash == verified.payload.root_hash
    assert verified.payload.tree_size == 5
    # Nothing new: the same checkpoint back, no entry, no signature.
    again, new = sign_checkpoint_audited(services, tenant, utcnow(), trigger="request")
    assert not new and again == signed and size(services, tenant) == 5
    # One check, done by the signing that was new (kept for /metrics).
    [(checked, (ok, at))] = services.metrics.checks().items()
    assert checked == (tenant, "checkpoint") and ok and abs(at - utcnow().timestamp()) < 30


def test_the_periodic_signer_goes_quiet_when_only_its_own_entries_are_new(services: Services) -> None:
    a, b = town(services, "gemeente-a"), town(services, "gemeente-b")
    assert sign_pending(services) == 2
    sizes = (size(services, a), size(services, b))
    for _ in range(3):  # no signing loop: its own entries are inside its checkpoints
        assert sign_pending(services) == 0
    assert (size(services, a), size(services, b)) == sizes == (2, 2)
    append(services, a)
    assert sign_pending(services) == 1
    assert (size(services, a), size(services, b)) == (4, 2)  # the new entry, and one for its checkpoint
    assert entry(services, a, 3)["details"]["trigger"] == "schedule"
    with services.db.read_session() as s:
        assert [c.tree_size for c in audit_log.checkpoints(s, a)] == [2, 4]


def test_a_signer_that_comes_second_rolls_its_entry_back(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = town(services, "gemeente-a")
    first, _ = sign_checkpoint_audited(services, tenant, utcnow(), trigger="schedule")
    # This signer's first look (before it takes the log's lock) is stale: it saw no checkpoint yet.
    real = audit_log.latest_checkpoint
    looks: list[int] = []

    def stale_then_real(session: Any, tenant_id: str) -> Checkpoint | None:
        looks.append(1)
        return None if len(looks) == 1 else real(session, tenant_id)

    monkeypatch.setattr(audit_log, "latest_checkpoint", stale_then_real)
    second, new = sign_checkpoint_audited(services, tenant, utcnow(), trigger="schedule")
    assert len(looks) == 2 and not new and second == first
    assert size(services, tenant) == first.tree_size  # its entry was rolled back


def test_concurrent_signers_agree_on_one_checkpoint_and_one_entry(services: Services) -> None:
    tenant = town(services, "gemeente-a")
    append(services, tenant, 5)
    start = threading.Barrier(4)
    results: list[tuple[Checkpoint, bool]] = []
    failures: list[BaseException] = []

    def sign() -> None:
        start.wait()
        try:
            results.append(sign_checkpoint_audited(services, tenant, utcnow(), trigger="schedule"))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=sign) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures and len(results) == 4
    assert sum(new for _, new in results) == 1
    assert {c.tree_size for c, _ in results} == {7} == {size(services, tenant)}
    with services.db.read_session() as s:
        names = [leaf.parse(e.leaf_bytes)["name"] for e in audit_log.get_entries(s, tenant, 0, 7)]
    assert names.count(tags.CHECKPOINT_SIGNED) == 1


def test_a_log_that_cannot_be_signed_is_reported_and_does_not_hold_up_the_others(
    services: Services,
) -> None:
    good, bad = town(services, "gemeente-a"), town(services, "gemeente-b")
    append(services, bad, 2)
    # A checkpoint row at the bad log's size with a root the log does not have (a rewritten history).
    with services.db.session() as s:
        s.execute(
            insert(CHECKPOINT).values(
                tenant_id=bad,
                tree_size=3,
                root_hash=os.urandom(32),
                timestamp_ms=leaf.to_ms(utcnow()),
                kid="forged",
                jws="x.y.z",
            )
        )
        s.commit()
    append(services, bad)
    assert sign_pending(services) == 1  # the good log; the bad one is refused and skipped
    assert size(services, bad) == 4  # the refused attempt left no entry behind
    checks = services.metrics.checks()
    assert checks[(good, "checkpoint")][0] is True and checks[(bad, "checkpoint")][0] is False
    with pytest.raises(CheckpointRefusedError):
        sign_checkpoint_audited(services, bad, utcnow(), trigger="request")
    assert size(services, bad) == 4
