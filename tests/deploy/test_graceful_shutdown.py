"""SIGTERM to ``kluis serve`` lets the requests in flight finish.

Three writes whose bodies are still being uploaded (slowly, in chunks) when SIGTERM arrives, and
eight clients reading as fast as they can: every upload gets its complete 200 and is stored in full,
every read that got an answer got a complete 200, the process exits with status 0 well within the
20 s graceful timeout, and the audit log holds exactly one entry per answered read and write (the
group committer is flushed on the way out) and verifies.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, select

from audit.tags import CHECKPOINT_SIGNED
from kluis.wiring import initialise
from tests.deploy.conftest import (
    Deployment,
    assert_dense,
    audit_rows,
    consent_token,
    municipality,
    running_nodes,
    valid_bsns,
)
from vault.models import Record, RecordVersion, Resident

GRACEFUL_TIMEOUT = 20  # kluis serve's timeout_graceful_shutdown
UPLOADS = 3
CHUNKS = 10
PAUSE = 0.25  # seconds between chunks: an upload takes about 2.5 s
READERS = 8


class SlowUpload:
    """A record write whose JSON body trickles in; remembers when each chunk left."""

    def __init__(self, n: int) -> None:
        self.document = {"status": "in_behandeling", "samenvatting": f"upload {n}: " + "x" * 4000}
        self.started = threading.Event()
        self.sent_at: list[float] = []
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.answered_at = 0.0

    def body(self) -> Iterator[bytes]:
        raw = json.dumps(self.document).encode()
        size = -(-len(raw) // CHUNKS)
        for offset in range(0, len(raw), size):
            yield raw[offset : offset + size]
            self.sent_at.append(time.monotonic())
            self.started.set()
            time.sleep(PAUSE)

    def run(self, url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        try:
            self.response = httpx.put(url, headers=headers, content=self.body(), timeout=30)
            self.response.read()
        except BaseException as exc:  # reported by the test
            self.error = exc
        self.answered_at = time.monotonic()


def reader(url: str, token: str, outcomes: list[Any]) -> None:
    """Read until the node no longer takes connections. A request that got no answer at all is fine
    (the node had stopped listening); an answer must be a complete 200."""
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per read
    with httpx.Client(timeout=30, limits=limits, headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            try:
                with http.stream("GET", url) as response:
                    try:
                        body = response.read()
                    except httpx.HTTPError as exc:
                        outcomes.append(("cut off", response.status_code, type(exc).__name__))
                        return
                    outcomes.append((response.status_code, json.loads(body)["data"]["maandinkomen"]))
            except httpx.HTTPError:
                return


def test_sigterm_finishes_in_flight_requests(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path / "data", None, "http://kluis.example.test")  # SQLite
    bsns = valid_bsns(2)
    with deployment.services() as svc:
        initialise(svc)
        town = municipality(svc, "sluiting", bsns)
        with running_nodes(deployment, 1, tmp_path) as [node]:
            read_token, read_grant = consent_token(
                town, bsns[0], ask=node.url, approve=node.url, token=node.url
            )
            write_token, write_grant = consent_token(
                town,
                bsns[1],
                ask=node.url,
                approve=node.url,
                token=node.url,
                department="jeugdzorg",
                purpose="jeugdhulp",
                categories=("jeugdzorg.dossier",),
                allow_write=["jeugdzorg.dossier"],
            )
            before = assert_dense(svc, town.tenant_id)

            uploads = [SlowUpload(n) for n in range(UPLOADS)]
            threads = [
                threading.Thread(
                    target=u.run, args=(node.url + "/api/v1/records/jeugdzorg.dossier", write_token)
                )
                for u in uploads
            ]
            outcomes: list[Any] = []
            threads += [
                threading.Thread(
                    target=reader, args=(node.url + "/api/v1/records/inkomen", read_token, outcomes)
                )
                for _ in range(READERS)
            ]
            for thread in threads:
                thread.start()
            try:
                assert all(u.started.wait(10) for u in uploads)
                busy = time.monotonic() + 1.0  # the readers get going, the uploads are part-way
                while (len(outcomes) < READERS or time.monotonic() < busy - 0.7) and time.monotonic() < busy:
                    time.sleep(0.02)
                assert outcomes, "the readers got no answer before SIGTERM"
                signalled = time.monotonic()
                node.terminate()
                status = node.process.wait(GRACEFUL_TIMEOUT + 10)
                exited = time.monotonic()
            finally:
                for thread in threads:
                    thread.join(40)
        assert status == 0, node.logs()
        assert exited - signalled < GRACEFUL_TIMEOUT, "the node waited for its graceful timeout"
        assert "timeout graceful shutdown exceeded" not in node.logs()

        # Every upload was in flight at SIGTERM (chunks still to come) and got its complete answer.
        versions = []
        for u in uploads:
            assert u.error is None, repr(u.error)
            assert u.response is not None and u.response.status_code == 200, u.response and u.response.text
            assert sum(at > signalled for at in u.sent_at) >= 2, "the upload was not in flight at SIGTERM"
            assert signalled < u.answered_at <= exited
            versions.append(u.response.json()["version"])
        assert sorted(versions) == list(range(1, UPLOADS + 1))

        # Every read that was answered was answered completely, with the right record.
        assert [o for o in outcomes if o != (200, 1000.0)] == []
        reads = len(outcomes)

        # One audit entry per answered read and write: nothing lost, nothing extra (besides the
        # periodic checkpoint signer's own entries, if it ran meanwhile).
        after = assert_dense(svc, town.tenant_id)
        new = [row for row in audit_rows(svc, town.tenant_id)[before:] if row[1] != CHECKPOINT_SIGNED]
        assert sorted((name, decision, grant) for _, name, decision, grant in new) == sorted(
            [("vault:record:read", "allow", read_grant)] * reads
            + [("vault:record:written", "allow", write_grant)] * UPLOADS
        )

        # The uploads were stored whole.
        with svc.db.read_session() as s:
            resident = s.get(Resident, town.residents[bsns[1]])
            assert resident is not None
            record = s.exec(
                select(Record).where(
                    Record.resident_id == resident.id, Record.category == "jeugdzorg.dossier"
                )
            ).one()
            stored = [
                svc.vault.decrypt(resident, record, version).data
                for version in s.exec(
                    select(RecordVersion)
                    .where(RecordVersion.record_id == record.id)
                    .order_by(col(RecordVersion.version))
                )
            ]
        assert sorted(json.dumps(d, sort_keys=True) for d in stored) == sorted(
            json.dumps(u.document, sort_keys=True) for u in uploads
        )
    report = deployment.verify("sluiting")
    assert report["entries"] == after
    print(
        f"{reads} reads answered, {UPLOADS} uploads finished; exit {exited - signalled:.2f} s after SIGTERM"
    )
