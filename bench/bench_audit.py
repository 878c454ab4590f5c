"""Benchmark of the audit log: appends per second and verification entries per second.

For each database (SQLite with ``synchronous=FULL`` as deployed, PostgreSQL with its defaults) it
fills a fresh log with ``--entries`` entries and reports:

* single appends: one entry per transaction, committed (the fsync included);
* the cost of one append inside an open transaction (what a request pays before the commit);
* batched appends: ``--batch`` entries per transaction (what the group committer does);
* verification (``verify_log``: every leaf, node, column and checkpoint) in entries per second;
* offline verification of an export, and the time of an inclusion proof.

usage: python -m bench.bench_audit [--entries 20000] [--batch 100] [--single 1000] [--db sqlite,postgres]

The million-entry case (a few minutes per database, most of it filling the log)::

    python -m bench.bench_audit --entries 1000000 --single 1000 --db sqlite
    python -m bench.bench_audit --entries 1000000 --single 1000 --db postgres

``KLUIS_BENCH_POSTGRES_URL`` names the server (default ``postgresql+psycopg://postgres@127.0.0.1:5432``);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jwcrypto import jwk
from sqlalchemy import create_engine, text

from audit import services
from audit.checkpoints import CheckpointVerifier, Ed25519CheckpointSigner
from audit.export import verify_export, write_export
from audit.schemas import Actor, AuditEvent, TraceContext
from audit.verify import verify_log
from kluis.db import Database

POSTGRES = os.environ.get("KLUIS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
TENANT = "b3c4d5e6f708192a3b4c5d6e7f809102"
START = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
DEPARTMENTS = ("jeugdzorg", "inkomen", "wmo", "schulden")


def make_event(i: int) -> AuditEvent:
    """A department's record read, as the vault writes it (opaque ids and codes only)."""
    department = DEPARTMENTS[i % len(DEPARTMENTS)]
    return AuditEvent(
        tenant=TENANT,
        name="vault:record:read",
        actor=Actor(type="client", id=f"{department}-portaal"),
        trace=TraceContext.new(),
        start_time=START + timedelta(milliseconds=37 * i),
        end_time=START + timedelta(milliseconds=37 * i + 4),
        decision="deny" if i % 17 == 0 else "allow",
        reason="grant_expired" if i % 17 == 0 else None,
        data_subject_id=secrets.token_hex(16),
        processing_activity_id=f"{department}-toewijzing",
        legal_basis="gdpr-6-1-a",
        grant_id=secrets.token_hex(16),
        department=department,
        client_id=f"{department}-portaal",
        categories=("inkomen",),
        details={"version": 1, "fields": None},
    )


@contextmanager
def database(kind: str) -> Iterator[Database]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            db = Database(f"sqlite:///{Path(directory) / 'bench.db'}", sqlite_synchronous="FULL")
            db.migrate()
            try:
                yield db
            finally:
                db.dispose()
        return
    name = f"kluis_bench_audit_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    db = Database(f"{POSTGRES}/{name}")
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} /s"


def run(kind: str, entries: int, batch: int, single: int) -> None:
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="checkpoint-bench")
    signer = Ed25519CheckpointSigner(key)
    verifier = CheckpointVerifier({"keys": [key.export_public(as_dict=True)]})
    with database(kind) as db:
        with db.session() as session:
            services.ensure_log(session, TENANT, f"kluis/bench-{kind}")
            session.commit()
        events = [make_event(i) for i in range(min(entries, 10_000))]
        single = min(single, entries)

        started = time.perf_counter()
        for i in range(single):
            with db.session() as session:
                services.append(session, events[i % len(events)])
                session.commit()
        print(f"{kind:8} single appends (1 per commit)     {rate(single, time.perf_counter() - started)}")

        in_transaction = min(1000, entries - single)
        costs = []
        with db.session() as session:
            for i in range(in_transaction):
                before = time.perf_counter()
                services.append(session, events[i % len(events)])
                costs.append(time.perf_counter() - before)
            session.commit()
        if costs:
            median_us = statistics.median(costs) * 1e6
            print(f"{kind:8} one append in an open transaction {median_us:>10.0f} µs (median)")

        remaining = entries - single - in_transaction
        started = time.perf_counter()
        for first in range(0, remaining, batch):
            chunk = [events[(first + k) % len(events)] for k in range(min(batch, remaining - first))]
            with db.session() as session:
                services.append_many(session, chunk)
                session.commit()
        if remaining > 0:
            elapsed = time.perf_counter() - started
            print(f"{kind:8} batched appends ({batch} per commit)  {rate(remaining, elapsed)}")

        with db.session() as session:
            services.sign_checkpoint(session, TENANT, signer, datetime.now(UTC))
            session.commit()

        with db.read_session() as session:
            started = time.perf_counter()
            result = verify_log(session, TENANT, verifier)
            elapsed = time.perf_counter() - started
        assert result.ok and result.entries == entries, result
        print(f"{kind:8} verify_log ({entries:,} entries)      {rate(entries, elapsed)}  ({elapsed:.1f} s)")

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "export.jsonl"
            with db.read_session() as session, path.open("w") as out:
                write_export(session, TENANT, out)
            started = time.perf_counter()
            with path.open() as lines:
                exported = verify_export(lines, verifier)
            elapsed = time.perf_counter() - started
        assert exported.ok, exported
        print(f"{kind:8} offline verify of the export     {rate(entries, elapsed)}")

        step = max(1, entries // 200)
        timings = []
        with db.read_session() as session:
            for seq in range(0, entries, step):
                before = time.perf_counter()
                services.inclusion_proof(session, TENANT, seq, entries)
                timings.append(time.perf_counter() - before)
        print(
            f"{kind:8} inclusion proof                  {statistics.median(timings) * 1e6:>10.0f} µs (median)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--single", type=int, default=1000, help="entries appended one per commit")
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args()
    for kind in args.db.split(","):
        run(kind.strip(), args.entries, args.batch, args.single)
        time.sleep(2)  # let the previous run's writes settle before the next database


if __name__ == "__main__":
    main()
