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


def valid_bsns(limit: int) -> Iterator[str]:
    count = 0
    for person in brp_persons():
        bsn = str(person.get("burgerservicenummer", ""))
        if is_valid_bsn(bsn):
            yield bsn
            count += 1
            if count >= limit:
                return


def build_demo(services: Services, *, residents: int, progress: Callable[[str], None]) -> str:
    ctx = operator_context()
    with services.db.session() as session:
        if any(t.slug == DEMO_SLUG for t in services.vault.tenants(session)):
            return f"demo municipality {DEMO_SLUG} already exists; nothing changed"
        tenant = services.vault.create_tenant(session, ctx, DEMO_SLUG, DEMO_NAME)
        for code, name in DEPARTMENTS.items():
            services.departments.create(session, ctx, tenant, code, name)
        rng = random.Random(20261125)  # noqa: S311 - demo figures, not secrets
        added = 0
        for bsn in valid_bsns(residents):
            resident = services.vault.add_resident(session, ctx, tenant, bsn)
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
        f"demo municipality {DEMO_SLUG}: {len(DEPARTMENTS)} departments, {added} residents "
        f"(fictitious BRP test persons)"
    )
