"""Fixtures for the import tests: a Kluis (SQLite and PostgreSQL) whose BRP source is the stand-in BRP
server on loopback (real HTTP), configured the way an operator does it: a JSON file named by
``KLUIS_CONNECTORS_FILE`` and the API key in a ``KLUIS_CONNECTOR_SECRET_*`` environment variable."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from audit import leaf
from audit.schemas import Actor, TraceContext
from kluis.cli import build_app
from kluis.settings import Settings
from kluis.wiring import Services, build_services, initialise, utcnow
from tests.connectors import conftest as connector_fixtures
from tests.support.brp_standin import StandinServer
from vault.models import Tenant
from vault.services import Context

# The stand-in BRP server (one per session, reset before each test) and its 1,176 persons.
raw_personen = connector_fixtures.raw_personen
standin_server = connector_fixtures.standin_server
standin = connector_fixtures.standin
unknown_bsn = connector_fixtures.unknown_bsn

TENANT = "gemeente-a"
SECRET_ENV = "KLUIS_CONNECTOR_SECRET_BRP"
#: The one BSN of the test data that fails the 11-proef.
INVALID_BSN = "999999245"
#: A minor with GezamenlijkOuderlijkGezag held by both parents.
GEZAG_BSN = "999970124"
NINE_DIGITS = re.compile(r"(?<!\d)\d{9}(?!\d)")


def brp_source(standin: StandinServer, **overrides: Any) -> dict[str, Any]:
    """The BRP source as an operator configures it; retries short so failures take no time."""
    return {
        "kind": "haal-centraal-brp",
        "base_url": standin.brp_url,
        "auth": {"type": "api_key", "key_ref": SECRET_ENV},
        "timeout": 10,
        "retry": {"max_attempts": 2, "base_delay": 0.0, "max_delay": 0.0},
        "circuit": {"failure_threshold": 1000},
        **overrides,
    }


def operator() -> Context:
    return Context(actor=Actor(type="operator", id="cli:test"), trace=TraceContext.new(), now=utcnow())


@dataclass
class Kluis:
    """A Kluis data directory with one municipality, its services, and the CLI to drive it."""

    services: Services
    tenant: Tenant
    data_dir: Path
    config_file: Path
    runner: CliRunner

    def configure(self, sources: dict[str, Any]) -> None:
        """Write the connector configuration (the services read it on first use)."""
        self.config_file.write_text(json.dumps({"tenants": {TENANT: sources}}), encoding="utf-8")

    def cli(self, *args: str, code: int | None = 0) -> Any:
        result = self.runner.invoke(build_app(), list(args))
        if code is not None:
            assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
        return result

    def audit(self, name: str | None = None) -> list[dict[str, Any]]:
        """The tenant's audit entries in order (the objects that were hashed), optionally by name."""
        entries = [leaf.parse(raw) for raw in self.audit_bytes()]
        return [e for e in entries if name is None or e["name"] == name]

    def audit_bytes(self) -> list[bytes]:
        with self.services.db.read_session() as s:
            rows = s.execute(
                text("SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t ORDER BY seq"),
                {"t": self.tenant.id},
            )
            return [bytes(row[0]) for row in rows]


@pytest.fixture
def kluis(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, standin: StandinServer
) -> Iterator[Kluis]:
    data_dir = tmp_path / "data"
    config_file = tmp_path / "connectors.json"
    monkeypatch.setenv("KLUIS_ENV", "development")
    monkeypatch.setenv("KLUIS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("KLUIS_DATABASE_URL", db_url)
    monkeypatch.setenv("KLUIS_CONNECTORS_FILE", str(config_file))
    monkeypatch.setenv(SECRET_ENV, "test-key")
    services = build_services(Settings())
    initialise(services)
    with services.db.session() as s:
        tenant = services.vault.create_tenant(s, operator(), TENANT, "Gemeente A")
    made = Kluis(services, tenant, data_dir, config_file, CliRunner())
    made.configure({"brp": brp_source(standin)})
    try:
        yield made
    finally:
        services.close()


def bsns_in(output: str, known: set[str]) -> set[str]:
    """Every BSN of ``known`` that appears in ``output``."""
    return set(NINE_DIGITS.findall(output)) & known
