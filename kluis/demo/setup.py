"""``kluis demo``: a demo municipality (Demodam) with departments, purposes, residents and records.

Residents are the first fictitious persons of the Haal Centraal BRP test data (EUPL-1.2) whose BSN
passes the 11-proef. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from connectors.brp_mapping import map_persoon
from connectors.errors import ConnectorError
from kluis.cli._common import operator_context
from kluis.wiring import Services
from vault.bsn import is_valid_bsn

DEMO_SLUG = "demodam"
DEMO_NAME = "Gemeente Demodam"
DEPARTMENTS = {
    "jeugdzorg": "Jeugdzorg",
    "inkomen": "Werk en inkomen",
    "wmo": "Wmo en zorg",
    "schuldhulp": "Schuldhulpverlening",
}


def brp_persons() -> list[dict[str, Any]]:
    """The 1,176 fictitious persons of the BRP test data."""
    raw = resources.files("kluis.demo").joinpath("personen-test-data.json.gz").read_bytes()
    persons: list[dict[str, Any]] = json.loads(gzip.decompress(raw))
    return persons


PURPOSES = [
    (
        "bijstand",
        "Aanvraag bijstand beoordelen",
        "Assess an application for social assistance",
        ["inkomen", "schulden"],
        [],
        90,
    ),
    (
        "jeugdhulp",
        "Toewijzing jeugdhulp",
        "Allocating youth care",
        ["jeugdzorg.dossier", "brp.persoon"],
        ["jeugdzorg.dossier"],
        365,
    ),
    (
        "wmo-melding",
        "Onderzoek na een Wmo-melding",
        "Assessment after a request for Wmo support",
        ["wmo.indicatie", "brp.persoon"],
        ["wmo.indicatie"],
        180,
    ),
    ("schuldhulp", "Schuldhulpverlening", "Debt counselling", ["schulden", "inkomen"], ["schulden"], 365),
]
CLIENT_DEPARTMENTS = {
    "jeugdhulp": "jeugdzorg",
    "bijstand": "inkomen",
    "wmo-melding": "wmo",
    "schuldhulp": "schuldhulp",
}


def valid_persons(limit: int) -> Iterator[tuple[str, dict[str, Any]]]:
    count = 0
    for person in brp_persons():
        bsn = str(person.get("burgerservicenummer", ""))
        if is_valid_bsn(bsn):
            yield bsn, person
            count += 1
            if count >= limit:
                return


def valid_bsns(limit: int) -> Iterator[str]:
    for bsn, _person in valid_persons(limit):
        yield bsn


def build_demo(services: Services, *, residents: int, progress: Callable[[str], None]) -> str:
    ctx = operator_context()
    with services.db.session() as session:
        if any(t.slug == DEMO_SLUG for t in services.vault.tenants(session)):
            return f"demo municipality {DEMO_SLUG} already exists; nothing changed"
        tenant = services.vault.create_tenant(session, ctx, DEMO_SLUG, DEMO_NAME)
        for code, name in DEPARTMENTS.items():
            services.departments.create(session, ctx, tenant, code, name)
        for code, nl, en, categories, writable, days in PURPOSES:
            services.purposes.add(
                session,
                ctx,
                tenant,
                code,
                description_nl=nl,
                description_en=en,
                legal_basis="consent",
                categories=categories,
                writable_categories=writable,
                max_days=days,
            )
        clients: dict[str, dict[str, str]] = {}
        for department in sorted(set(CLIENT_DEPARTMENTS.values())):
            client, secret = services.clients.create(session, ctx, tenant, department, secret=True)
            clients[department] = {"client_id": client.id, "client_secret": secret or ""}
        # Development-only client secrets for trying the API; mode 0600 like the key file.
        secrets_file = services.settings.data_dir / "demo-clients.json"
        secrets_file.write_text(json.dumps(clients, indent=2))
        secrets_file.chmod(0o600)
        rng = random.Random(20261125)  # noqa: S311 - demo figures, not secrets
        added = 0
        for bsn, person in valid_persons(residents):
            resident = services.vault.add_resident(session, ctx, tenant, bsn)
            try:
                brp = map_persoon(person)
            except ConnectorError:
                brp = None  # a few test persons carry data the mapping refuses: they get no BRP record
            if brp is not None:
                services.vault.put_record(session, ctx, resident, "brp.persoon", brp, source="brp-demo")
            income = {
                "maandinkomen": float(rng.randrange(900, 4200)),
                "periode": "2026-10",
                "werkgever": rng.choice(["Gemeente Demodam", "Bakkerij De Korrel", "Zorggroep Noord"]),
            }
            services.vault.put_record(session, ctx, resident, "inkomen", income, source="demo")
            added += 1
            if added % 10 == 0:
                progress(f"demo: {added}/{residents} residents")
    return (
        f"demo municipality {DEMO_SLUG}: {len(DEPARTMENTS)} departments, {len(PURPOSES)} purposes, {added} "
        f"residents (fictitious BRP test persons); department clients for trying the API: {secrets_file}"
    )
