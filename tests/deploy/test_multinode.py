"""Two ``kluis serve`` processes on one real PostgreSQL, driven alternately over loopback.

consent → token from node A → read on node B → revoke on node B → refused on node A on the very next
request; then 8 concurrent clients spread over both nodes, after which the audit log is dense (every
sequence number once, exactly one entry per read), checkpointed by the nodes and verified by
``kluis audit verify``. Both nodes stop on SIGTERM with exit status 0.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from audit import leaf
from audit.tags import CHECKPOINT_SIGNED
from kluis.wiring import Services
from tests.deploy.conftest import (
    Node,
    assert_dense,
    audit_rows,
    consent_token,
    initialised,
    municipality,
    running_nodes,
    stop_all,
    valid_bsns,
)
from tests.e2e.test_consent_flow import problem

pytestmark = pytest.mark.postgres

RECORD = "/api/v1/records/inkomen"
CLIENTS = 8
READS_PER_CLIENT = 20


def refusal_reasons(svc: Services, tenant_id: str, grant_id: str) -> list[str]:
    with svc.db.read_session() as s:
        rows = s.execute(
            text(
                "SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t AND grant_id = :g"
                " AND name = 'consent:token:refused' ORDER BY seq"
            ),
            {"t": tenant_id, "g": grant_id},
        )
        return [str(leaf.parse(bytes(r[0]))["reason"]) for r in rows]


def reads_served(node: Node) -> int:
    """The node's own count of 200 answers to record reads (its /metrics)."""
    wanted = 'kluis_http_requests_total{method="GET",route="/api/v1/records/{category}",status="200"} '
    lines = httpx.get(node.url + "/metrics").text.splitlines()
    return sum(int(float(line.removeprefix(wanted))) for line in lines if line.startswith(wanted))


def latest_checkpoint(svc: Services, tenant_id: str) -> int:
    with svc.db.read_session() as s:
        size = s.execute(
            text("SELECT max(tree_size) FROM audit_checkpoint WHERE tenant_id = :t"), {"t": tenant_id}
        ).scalar()
    return -1 if size is None else int(size)


def test_two_nodes_share_one_postgresql(pg_database: str, tmp_path: Path) -> None:
    bsns = valid_bsns(1 + CLIENTS)
    deployment = initialised(
        tmp_path / "data",
        pg_database,
        "http://kluis.example.test",  # the load balancer's name: both nodes announce it
        KLUIS_CHECKPOINT_INTERVAL_SECONDS="1",
    )
    with deployment.services() as svc:
        town = municipality(svc, "tweeknoop", bsns)
        with running_nodes(deployment, 2, tmp_path) as nodes:
            a, b = nodes
            # -- consent on one node, use and revocation on the other ------------------------------------
            first = bsns[0]
            token, grant_id = consent_token(town, first, ask=a.url, approve=b.url, token=a.url)
            bearer = {"Authorization": f"Bearer {token}"}
            read_b = httpx.get(b.url + RECORD, headers=bearer)
            assert read_b.status_code == 200, read_b.text
            assert read_b.json()["data"]["maandinkomen"] == 1000.0
            read_a = httpx.get(a.url + RECORD, headers=bearer)  # A has checked (and cached) the token too
            assert read_a.status_code == 200, read_a.text
            resident = {"Authorization": f"Bearer {town.resident_tokens[first]}"}
            revoked = httpx.post(f"{b.url}/api/v1/me/grants/{grant_id}/revoke", headers=resident)
            assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None, revoked.text
            refused = problem(httpx.get(a.url + RECORD, headers=bearer), 403)  # the very next request on A
            assert refused["type"] == "urn:kluis:problem:access-denied"
            problem(httpx.get(b.url + RECORD, headers=bearer), 403)
            assert refusal_reasons(svc, town.tenant_id, grant_id) == ["grant_revoked", "grant_revoked"]
            first_phase = Counter(
                (name, decision)
                for _, name, decision, grant in audit_rows(svc, town.tenant_id)
                if grant == grant_id
            )
            assert first_phase[("vault:record:read", "allow")] == 2
            assert first_phase[("consent:token:refused", "deny")] == 2

            # -- 8 concurrent clients, each alternating between the nodes --------------------------------
            grants: dict[str, tuple[str, str]] = {}  # BSN -> (token, grant id)
            for i, bsn in enumerate(bsns[1:]):
                here, there = nodes[i % 2], nodes[(i + 1) % 2]
                grants[bsn] = consent_token(town, bsn, ask=here.url, approve=there.url, token=here.url)
            served_before = [reads_served(node) for node in nodes]
            before = assert_dense(svc, town.tenant_id)
            start = threading.Barrier(CLIENTS)

            def client(i: int) -> list[str]:
                """Reads of client ``i``: 'ok', or what was wrong with the answer."""
                bsn = bsns[1 + i]
                outcomes = []
                with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {grants[bsn][0]}"}) as http:
                    start.wait(timeout=30)
                    for n in range(READS_PER_CLIENT):
                        response = http.get(nodes[(i + n) % 2].url + RECORD)
                        if response.status_code != 200:
                            outcomes.append(f"{response.status_code}: {response.text[:200]}")
                        elif response.json()["data"]["maandinkomen"] != 1001.0 + i:
                            outcomes.append("another resident's record")
                        else:
                            outcomes.append("ok")
                return outcomes

            began = time.monotonic()
            with ThreadPoolExecutor(CLIENTS) as pool:
                results = list(pool.map(client, range(CLIENTS)))
            elapsed = time.monotonic() - began
            assert [o for outcomes in results for o in outcomes if o != "ok"] == []
            total = CLIENTS * READS_PER_CLIENT
            # Both nodes did their half (a node counts a request just after answering it: allow a moment).
            deadline = time.monotonic() + 5
            while (
                served := [reads_served(node) - n for node, n in zip(nodes, served_before, strict=True)]
            ) != [total // 2] * 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert served == [total // 2, total // 2]

            # -- the log: one entry per read, no gap, no duplicate ----------------------------------------
            # The only other entries: the nodes' own checkpoint signatures (each one is audited).
            after = assert_dense(svc, town.tenant_id)
            new = audit_rows(svc, town.tenant_id)[before:after]
            kinds = Counter((name, decision) for _, name, decision, _ in new)
            signatures = kinds.pop((CHECKPOINT_SIGNED, None), 0)
            assert kinds == {("vault:record:read", "allow"): total}
            assert after == before + total + signatures
            per_grant = Counter(grant for _, name, _, grant in new if name != CHECKPOINT_SIGNED)
            assert per_grant == {grant: READS_PER_CLIENT for _, grant in grants.values()}

            # Both nodes sign checkpoints every second; soon one covers the whole log (and so its own
            # entry, if signing is audited).
            deadline = time.monotonic() + 15
            while latest_checkpoint(svc, town.tenant_id) != (final := assert_dense(svc, town.tenant_id)):
                assert time.monotonic() < deadline, "no node signed a checkpoint of the whole log"
                time.sleep(0.2)
            assert stop_all(nodes) == [0, 0], [node.logs() for node in nodes]
            assert assert_dense(svc, town.tenant_id) == final  # nothing came after the last checkpoint

        report = deployment.verify("tweeknoop")
        assert report["entries"] == final and report["latest_checkpoint"] == final
        print(f"{total} reads by {CLIENTS} clients over 2 nodes in {elapsed:.2f} s")
