"""Deployment tests: real ``kluis`` processes (the venv's executable) over loopback.

- ``pg_database``: a fresh, empty PostgreSQL DATABASE for one test (``kluis_dp_<hex>`` on the server
  of ``tests/conftest.py``'s ``POSTGRES_URL``), dropped ``WITH (FORCE)`` afterwards.
- ``Deployment``: one data directory (key file) and one database URL, as every node of a deployment
  shares them; ``cli()`` runs ``kluis`` commands, ``services()`` opens the same deployment in this
  process for setting up data and looking into the database.
- ``running_nodes()``: ``kluis serve`` processes on free loopback ports, ready when ``/health/ready``
  answers; stopped (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from audit.checkpoints import CheckpointVerifier
from audit.verify import verify_log
from kluis.settings import Settings
from kluis.wiring import Services, build_services
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import free_port
from tests.e2e.test_consent_flow import CIBA, operator
from tests.support import world
from vault.bsn import is_valid_bsn

KLUIS = str(Path(sys.executable).parent / "kluis")
INCOME = {"maandinkomen": 2100.0, "werkgever": "Loopback BV"}


def valid_bsns(count: int, start: int = 99_990_000) -> list[str]:
    """``count`` distinct BSNs that pass the 11-proef (fictitious: the 9999… test range)."""
    found: list[str] = []
    prefix = start
    while len(found) < count:
        candidates = (f"{prefix:08d}{d}" for d in range(10))
        found.extend(c for c in candidates if is_valid_bsn(c))
        prefix += 1
    return found[:count]


# -- databases ---------------------------------------------------------------------------------------
def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server (same user, host, port and options)."""
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def admin_connection() -> Iterator[Any]:
    engine = create_engine(database_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def create_database(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))


def drop_database(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; its URL. Dropped afterwards, whatever happens."""
    name = "kluis_dp_" + secrets.token_hex(5)
    create_database(name)
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with fresh_database() as url:
        yield url


# -- one deployment: a data directory (key file) and a database ------------------------------------------
@dataclass
class Deployment:
    data_dir: Path
    database_url: str | None  # None: SQLite in the data directory
    issuer: str  # the public URL every node announces (the load balancer's)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment of every ``kluis`` process: this test's ``KLUIS_*`` settings only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLUIS_")}
        env.update(
            KLUIS_ENV="development",
            KLUIS_DATA_DIR=str(self.data_dir),
            KLUIS_ISSUER=self.issuer,
            KLUIS_BASE_URL=self.issuer,
            KLUIS_RATE_LIMIT_PER_MINUTE="1000000",
            KLUIS_POLL_INTERVAL_SECONDS="1",
            **self.extra,
        )
        if self.database_url is not None:
            env["KLUIS_DATABASE_URL"] = self.database_url
        return env

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KLUIS, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def settings(self) -> Settings:
        return Settings(
            env="development",
            data_dir=self.data_dir,
            database_url=self.database_url,
            issuer=self.issuer,
            base_url=self.issuer,
            key_file=None,
        )

    @contextmanager
    def services(self) -> Iterator[Services]:
        built = build_services(self.settings())
        try:
            yield built
        finally:
            built.close()

    def verify(self, slug: str) -> dict[str, Any]:
        """``kluis audit verify --tenant slug --json``: must exit 0; its report."""
        done = self.cli("audit", "verify", "--tenant", slug, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        assert report["ok"] is True and report["damage"] is None
        return report


def initialised(data_dir: Path, database_url: str | None, issuer: str, **extra: str) -> Deployment:
    """A deployment set up by ``kluis init``."""
    deployment = Deployment(data_dir, database_url, issuer, extra)
    done = deployment.cli("init")
    assert done.returncode == 0, done.stderr
    return deployment


def log_entries(svc: Services, slug: str) -> int:
    """Verify a municipality's log in this process (as ``kluis audit verify`` does, without the
    subprocess and without recording the verification); its number of entries."""
    with svc.db.read_session() as s:
        tenant_id = svc.vault.tenant(s, slug).id
        result = verify_log(s, tenant_id, CheckpointVerifier(svc.signing.public_jwks(s, "checkpoint")))
    assert result.ok, result.to_json()
    return result.entries


# -- kluis serve processes ---------------------------------------------------------------------------
@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    terminated: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """The tail of what the process wrote (it writes through its own descriptor)."""
        return self.log_path.read_text(errors="replace")[-3000:]

    def terminate(self) -> None:
        """One SIGTERM, as an orchestrator sends it (never a second one)."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop in time. Returns the exit status."""
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise


def stop_all(nodes: list[Node], timeout: float = 30) -> list[int]:
    """SIGTERM to every node at once, then their exit statuses."""
    for node in nodes:
        node.terminate()
    return [node.stop(timeout) for node in nodes]


def wait_until_ready(nodes: list[Node], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        while True:
            if node.process.poll() is not None:
                pytest.fail(f"kluis serve exited with {node.process.returncode}:\n{node.logs()}")
            try:
                if httpx.get(node.url + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"kluis serve did not get ready in {timeout} s:\n{node.logs()}")
            time.sleep(0.05)


@contextmanager
def running_nodes(deployment: Deployment, count: int, log_dir: Path) -> Iterator[list[Node]]:
    """``count`` ``kluis serve`` processes of ``deployment`` on loopback; stopped afterwards."""
    with ExitStack() as stack:
        nodes: list[Node] = []
        for n in range(count):
            port = free_port()
            log_path = log_dir / f"node-{n}-{port}.log"
            log = stack.enter_context(log_path.open("wb"))
            process = subprocess.Popen(
                [KLUIS, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=deployment.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            node = Node(port, process, log_path, log)
            stack.callback(_reap, node)
            nodes.append(node)
        wait_until_ready(nodes)
        yield nodes


def _reap(node: Node) -> None:
    if node.process.poll() is None:
        node.process.kill()
    node.process.wait(10)


# -- a municipality, and consent over HTTP ------------------------------------------------------------
@dataclass
class Town:
    slug: str
    tenant_id: str
    clients: dict[str, tuple[str, str]]  # department code -> (client id, client secret)
    residents: dict[str, str]  # BSN -> resident id
    resident_tokens: dict[str, str] = field(default_factory=dict)  # BSN -> resident bearer token


def municipality(svc: Services, slug: str, bsns: list[str]) -> Town:
    """A tenant with two departments (inkomen reads; jeugdzorg reads and writes its dossier), secret
    clients, and residents with an income record and a resident token each."""
    town = Town(slug, "", {}, {})
    with svc.db.session() as s:
        place = world.municipality(
            s,
            svc,
            svc.vault,
            operator(),
            slug,
            departments=("inkomen", "jeugdzorg"),
            purposes=(
                replace(world.BIJSTAND, categories=("inkomen",)),
                replace(world.JEUGDHULP, max_days=90),
            ),
        )
        tenant = place.tenant
        town.tenant_id = tenant.id
        town.clients.update(place.clients)
        for n, bsn in enumerate(bsns):
            resident = svc.vault.add_resident(s, operator(), tenant, bsn)
            town.residents[bsn] = resident.id
            svc.vault.put_record(
                s, operator(), resident, "inkomen", {**INCOME, "maandinkomen": 1000.0 + n}, source="test"
            )
        for bsn, resident_id in town.residents.items():
            town.resident_tokens[bsn] = svc.oauth.issue_user_token(
                s, operator(), role="resident", tenant_id=tenant.id, subject=resident_id
            )
    return town


def consent_token(
    town: Town,
    bsn: str,
    *,
    ask: str,
    approve: str,
    token: str,
    department: str = "inkomen",
    purpose: str = "bijstand",
    categories: tuple[str, ...] = ("inkomen",),
    **approval: Any,
) -> tuple[str, str]:
    """CIBA across nodes: the department asks at ``ask``, the resident approves at ``approve``, the
    department fetches its token at ``token``. Returns (access token, grant id)."""
    auth = town.clients[department]
    details = [{"type": "kluis:records", "categories": list(categories), "purpose": purpose}]
    asked = httpx.post(
        ask + "/oauth/bc-authorize",
        auth=auth,
        data={"login_hint": bsn, "authorization_details": json.dumps(details)},
    )
    assert asked.status_code == 200, asked.text
    me = {"Authorization": f"Bearer {town.resident_tokens[bsn]}"}
    listing = httpx.get(approve + "/api/v1/me/consent-requests", headers=me)
    assert listing.status_code == 200, listing.text
    [item] = [x for x in listing.json()["items"] if x["status"] == "pending"]
    approved = httpx.post(
        f"{approve}/api/v1/me/consent-requests/{item['id']}/approve", json=approval, headers=me
    )
    assert approved.status_code == 200, approved.text
    answer = httpx.post(
        token + "/oauth/token",
        auth=auth,
        data={"grant_type": CIBA, "auth_req_id": asked.json()["auth_req_id"]},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"]), str(approved.json()["id"])


def audit_rows(svc: Services, tenant_id: str) -> list[tuple[int, str, str | None, str | None]]:
    """(seq, name, decision, grant id) of every entry of the tenant's log, in order."""
    with svc.db.read_session() as s:
        rows = s.execute(
            text("SELECT seq, name, decision, grant_id FROM audit_entry WHERE tenant_id = :t ORDER BY seq"),
            {"t": tenant_id},
        ).all()
    return [(int(r[0]), str(r[1]), r[2], r[3]) for r in rows]


def assert_dense(svc: Services, tenant_id: str) -> int:
    """The log's sequence numbers are 0..N-1 without a gap and its state says N; returns N.

    The nodes' checkpoint signers may append while this reads, so the state is read first and the
    entries up to it after: an entry committed in between is not part of this check."""
    with svc.db.read_session() as s:
        size = s.execute(
            text("SELECT size FROM audit_log_state WHERE tenant_id = :t"), {"t": tenant_id}
        ).scalar()
    assert isinstance(size, int)
    seqs = [row[0] for row in audit_rows(svc, tenant_id) if row[0] < size]
    assert seqs == list(range(size)), "the audit sequence has gaps or duplicates"
    return size
