"""Growth curves: how the department read, audit appends, proofs and searches behave as one
municipality's tables grow (residents, records, grants, audit entries) to a million entries and more.

For each database (SQLite with ``synchronous=FULL`` as deployed, PostgreSQL with its defaults,
``synchronous_commit=on``) it builds one municipality and grows it step by step to each ``--steps``
size (audit entries); residents, records and grants grow with it (``--entries-per-resident``
entries per resident, see the shape below). At every step, in the same process, it measures:

* read     the department read without the web layer: the lean grant look-up and the lean resident
           + record look-up of ``kluis/hotpath.py``, ``ResourceGuard.decide``, and
           ``VaultService.decide_read`` (unwrap the data key, decrypt, parse), for random grants;
* append   one durable audit append: one transaction, one entry, one commit (fsync);
* batch    100 appends in one transaction and one commit (what the group committer does);
* proof    an inclusion proof of a random entry against the current tree size;
* search   the resident's "who saw my data" query (``AuditQuery(involving=…)``, 50 newest) and the
           privacy officer's search on the indexed data subject column, for random residents;
* onboard  one resident through the real services (``add_resident`` + ``put_record`` of the BRP
           record, two commits), as ``kluis import`` does it;
* size     the database size, per table, and bytes per audit entry, per record and per resident.

It prints a table after the last step (``--json`` writes every figure to a file).

How it fills, fast: the municipality, its departments, clients and purposes are created through the
services. Residents, records and grants are then inserted in transactions of about ``--batch``
audit entries each: the rows are built with the vault's own recipes (``vault.crypto``, the key
provider's wrap and BSN pseudonym) exactly as ``VaultService.add_resident``/``put_record`` and the
consent service build them, and every one of their audit events (``vault:resident:added``,
``vault:record:imported``/``written``, ``consent:request:created``/``approved``) goes through
``audit.services.append_many`` in the same transaction. The rest of each step is department reads
(``vault:record:read`` events of granted residents, 5 % refused), appended in batches. The log is a
real, verifiable Merkle log: it is checkpointed at every step and fully verified at the last one.
The reads measured above decrypt these rows with the services' code, so a bulk row the services
could not read fails the run.

Shape per resident (defaults; see ``DEPARTMENTS``): a ``brp.persoon`` record (~1 KiB JSON) for
everyone; ``inkomen`` for 50 %, ``wmo.indicatie`` 30 %, ``schulden`` 15 %, ``jeugdzorg.dossier``
10 %; for half of those department records the department holds a grant (365 days); 30 % of the
department records have a second version. That is ~2.05 records, ~2.36 record versions, ~0.52
grants and ~4.4 audit entries of creation per resident; department reads make up the rest.

usage::

    python -m bench.bench_growth                                   # 10k,100k,300k,1M on both (~15 min)
    python -m bench.bench_growth --steps 10000,100000 --db sqlite  # a quick look
    python -m bench.bench_growth --steps 2000 --db postgres --samples 50   # measure the fill rate

``KLUIS_BENCH_POSTGRES_URL`` names the server (default ``postgresql+psycopg://postgres@127.0.0.1:5432``);
a scratch database is created and dropped (``--keep`` keeps it, and the SQLite file, to look at).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jwcrypto import jwk
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from audit import services as audit_log
from audit import tags
from audit.checkpoints import CheckpointVerifier, Ed25519CheckpointSigner
from audit.models import table
from audit.schemas import Actor, AuditEvent, AuditQuery, TraceContext
from audit.verify import verify_log
from consent.models import ConsentRequest, Grant
from consent.requests import auth_req_hash
from consent.resource import ResourceGuard
from consent.schemas import VerifiedToken
from kluis.settings import Settings
from kluis.wiring import Services, build_services
from vault import crypto
from vault.models import Category, Record, RecordVersion, Resident, Tenant
from vault.schemas import AccessGrant
from vault.services import Context, new_id

POSTGRES = os.environ.get("KLUIS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
DEFAULT_STEPS = "10000,100000,300000,1000000"
START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
TICK = timedelta(milliseconds=2600)  # simulated time between two audit entries (~1M a month)
GRANT_DAYS = 365
OPERATOR = Actor(type="operator", id="cli:bench")

# department code, name, its record category, share of residents with such a record
DEPARTMENTS = (
    ("inkomen", "Werk en inkomen", "inkomen", 0.50),
    ("wmo", "Wmo", "wmo.indicatie", 0.30),
    ("schulden", "Schuldhulpverlening", "schulden", 0.15),
    ("jeugdzorg", "Jeugdzorg", "jeugdzorg.dossier", 0.10),
)
GRANT_SHARE = 0.5  # of the department records, those whose department holds a grant
SECOND_VERSION_SHARE = 0.3  # of the department records, those written twice
DENY_SHARE = 0.05  # of the department reads, those refused
VALIDATE_EVERY = 200  # one generated document in so many is checked against its category's schema

TABLES = (
    "audit_entry",
    "audit_node",
    "audit_checkpoint",
    "audit_log_state",
    "resident",
    "record",
    "record_version",
    "consent_request",
    "consent_grant",
)
RESIDENT, RECORD, VERSION = table(Resident), table(Record), table(RecordVersion)
REQUEST, GRANT = table(ConsentRequest), table(Grant)


# -- what is measured ------------------------------------------------------------------------------
@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def pct(self, p: float) -> float:
        """The p-th percentile in milliseconds (nearest rank); NaN without samples."""
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000

    def summary(self) -> dict[str, float | int]:
        return {
            "n": len(self.samples),
            "p50_ms": round(self.pct(50), 3),
            "p99_ms": round(self.pct(99), 3),
            "mean_ms": round(statistics.fmean(self.samples) * 1000, 3) if self.samples else float("nan"),
        }


@dataclass
class Step:
    db: str
    entries: int
    residents: int
    records: int
    versions: int
    grants: int
    fill_seconds: float
    fill_entries_per_s: float
    latency: dict[str, dict[str, float | int]]
    sizes: dict[str, int]
    checkpoint_ms: float
    verify: dict[str, float] | None = None

    @property
    def total_bytes(self) -> int:
        return self.sizes.get("_database", 0)

    def per(self) -> dict[str, float]:
        s = self.sizes
        audit = s.get("audit_entry", 0) + s.get("audit_node", 0)
        return {
            "bytes_per_entry": audit / max(self.entries, 1),
            "bytes_per_record": (s.get("record", 0) + s.get("record_version", 0)) / max(self.records, 1),
            "bytes_per_resident": s.get("resident", 0) / max(self.residents, 1),
            "bytes_per_grant": (s.get("consent_grant", 0) + s.get("consent_request", 0))
            / max(self.grants, 1),
        }


# -- the municipality ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Person:
    id: str
    pseudonym: str  # the audit pseudonym: what the log knows of a resident


@dataclass(frozen=True, slots=True)
class Granted:
    grant: AccessGrant
    pseudonym: str
    readable: tuple[tuple[str, int], ...]  # categories with a record, and its current version


@dataclass
class Municipality:
    """One tenant, grown in place; the lists remember what the measurements pick from."""

    services: Services
    kind: str
    tenant: Tenant
    departments: dict[str, tuple[str, str, str]]  # code -> (department id, client id, category)
    categories: dict[str, Category]  # code -> the tenant's category (its JSON Schema)
    rng: random.Random
    people: list[Person] = field(default_factory=list)
    granted: list[Granted] = field(default_factory=list)
    records: int = 0
    versions: int = 0
    entries: int = 0  # the log's size, kept in step with every append
    now: datetime = START
    next_bsn: int = 10_000_000

    def tick(self) -> datetime:
        self.now += TICK
        return self.now

    def ctx(self, actor: Actor = OPERATOR, trace: TraceContext | None = None) -> Context:
        return Context(actor=actor, trace=trace or TraceContext.new(), now=self.tick())

    def bsn(self) -> str:
        """The next BSN that passes the 11-proef (fictitious: nobody's number, but well-formed)."""
        while True:
            prefix = str(self.next_bsn)
            self.next_bsn += 1
            check = sum(int(d) * w for d, w in zip(prefix, range(9, 1, -1), strict=True)) % 11
            if check < 10:
                return prefix + str(check)


def _token(tenant_id: str, client_id: str, grant_id: str, resident_id: str, now: datetime) -> VerifiedToken:
    """Verified claims as ``TokenService`` hands them over (the signature check is not measured here:
    the claims of a verified token are cached until ``exp``, see docs/performance.md)."""
    issued = int(now.timestamp())
    return VerifiedToken(
        jti=secrets.token_hex(16),
        client_id=client_id,
        tenant_id=tenant_id,
        grant_id=grant_id,
        resident_id=resident_id,
        subject=resident_id,
        issued_at=issued,
        expires_at=issued + 300,
        claims={},
    )


def _resident_stub(person: Person, tenant_id: str) -> Resident:
    # What VaultService.event reads from a resident: its audit pseudonym (never the BSN).
    return Resident.model_construct(id=person.id, tenant_id=tenant_id, audit_pseudonym=person.pseudonym)


# -- record documents ------------------------------------------------------------------------------
FIRST = ("Jan", "Fatima", "Sanne", "Mohamed", "Daan", "Emma", "Noah", "Yasmina", "Lucas", "Julia")
LAST = ("de Vries", "Jansen", "El Amrani", "Bakker", "Visser", "Yilmaz", "Smit", "Meijer", "de Boer")
STREETS = ("Prinsengracht", "Javastraat", "Bijlmerdreef", "Osdorpplein", "Kinkerstraat", "Nieuwendammerdijk")
LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"
AMSTERDAM = {"code": "0363", "omschrijving": "Amsterdam"}


def _date(rng: random.Random, first: int, last: int) -> str:
    return f"{rng.randint(first, last)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _name(rng: random.Random) -> dict[str, str]:
    return {"voornamen": rng.choice(FIRST), "geslachtsnaam": rng.choice(LAST)}


def document(category: str, rng: random.Random, bsn: str) -> dict[str, Any]:
    """A plausible record of ``category`` (fictitious values), of a realistic size."""
    if category == "brp.persoon":
        children = [
            {
                "bsn": f"{rng.randint(10**8, 10**9 - 1)}",
                "naam": _name(rng),
                "geboortedatum": _date(rng, 1995, 2024),
            }
            for _ in range(rng.choice((0, 0, 1, 2, 3)))
        ]
        return {
            "naam": _name(rng),
            "geboorte": {
                "datum": _date(rng, 1935, 2024),
                "plaats": AMSTERDAM,
                "land": {"code": "6030", "omschrijving": "Nederland"},
            },
            "verblijfplaats": {
                "type": "Adres",
                "straat": rng.choice(STREETS),
                "huisnummer": rng.randint(1, 400),
                "postcode": f"10{rng.randint(10, 99)}{''.join(rng.choices(LETTERS, k=2))}",
                "woonplaats": "Amsterdam",
            },
            "gemeente_van_inschrijving": AMSTERDAM,
            "nationaliteiten": [
                {"type": "Nationaliteit", "nationaliteit": {"code": "0001", "omschrijving": "Nederlandse"}}
            ],
            "ouders": [
                {
                    "bsn": f"{rng.randint(10**8, 10**9 - 1)}",
                    "ouder_aanduiding": a,
                    "naam": _name(rng),
                    "geboortedatum": _date(rng, 1920, 1990),
                }
                for a in ("1", "2")
            ],
            "kinderen": children,
            "partners": [
                {
                    "bsn": f"{rng.randint(10**8, 10**9 - 1)}",
                    "naam": _name(rng),
                    "geboortedatum": _date(rng, 1940, 2000),
                    "soort_verbintenis": {"code": "H", "omschrijving": "huwelijk"},
                    "datum_aangaan": _date(rng, 1960, 2024),
                }
            ][: rng.choice((0, 1))],
            "gezag": [
                {
                    "type": "GezamenlijkOuderlijkGezag",
                    "minderjarige_bsn": child["bsn"],
                    "meerderjarigen": [{"rol": "ouder", "bsn": bsn}],
                }
                for child in children[:1]
            ],
        }
    if category == "inkomen":
        return {
            "maandinkomen": round(rng.uniform(900, 5200), 2),
            "werkgever": rng.choice(("Gemeente Amsterdam", "Albert Heijn BV", "UWV", "Zorggroep Amstel")),
            "periode": f"2025-{rng.randint(1, 12):02d}",
            "toeslagen": ["zorgtoeslag", "huurtoeslag"][: rng.randint(0, 2)],
        }
    if category == "wmo.indicatie":
        return {
            "voorziening": rng.choice(
                ("Huishoudelijke ondersteuning", "Rolstoel", "Dagbesteding", "Woningaanpassing")
            ),
            "omvang": f"{rng.randint(1, 8)} uur per week",
            "ingangsdatum": _date(rng, 2022, 2025),
            "einddatum": _date(rng, 2026, 2028),
        }
    if category == "schulden":
        amounts = [round(rng.uniform(50, 9000), 2) for _ in range(rng.randint(1, 8))]
        return {
            "totaal": round(sum(amounts), 2),
            "schuldeisers": [{"naam": f"Schuldeiser {i}", "bedrag": a} for i, a in enumerate(amounts, 1)],
            "traject": rng.choice(("aanmelding", "stabilisatie", "regeling", "afgerond")),
        }
    if category == "jeugdzorg.dossier":
        return {
            "status": rng.choice(("aangemeld", "in_behandeling", "afgesloten")),
            "zorgsoort": "Ambulante jeugdhulp",
            "casusregisseur": f"Regisseur {rng.randint(1, 300)}",
            "samenvatting": "Gesprekken met gezin en school; afspraken over begeleiding. "
            * rng.randint(4, 16),
            "startdatum": _date(rng, 2021, 2025),
        }
    raise ValueError(category)


# -- filling ---------------------------------------------------------------------------------------
def set_up(services: Services, kind: str, seed: int) -> Municipality:
    """The municipality, its departments, purposes and clients, through the services."""
    ctx = Context(actor=OPERATOR, trace=TraceContext.new(), now=START)
    with services.db.session() as session:
        tenant = services.vault.create_tenant(session, ctx, "gemeente-bench", "Gemeente Bench")
        departments: dict[str, tuple[str, str, str]] = {}
        for code, name, category, _share in DEPARTMENTS:
            department = services.departments.create(session, ctx, tenant, code, name)
            services.purposes.add(
                session,
                ctx,
                tenant,
                f"{code}-dienstverlening",
                description_nl=f"Dienstverlening {name}",
                description_en=f"Services of {name}",
                legal_basis="consent",
                categories=[category, "brp.persoon"],
                writable_categories=[category],
                max_days=GRANT_DAYS,
            )
            client, _secret = services.clients.create(session, ctx, tenant, code, secret=True)
            departments[code] = (department.id, client.id, category)
    with services.db.read_session() as session:
        categories = {c.code: c for c in services.vault.categories(session, tenant.id)}
        entries = audit_log.log_head(session, tenant.id).tree_size
    return Municipality(services, kind, tenant, departments, categories, random.Random(seed), entries=entries)


def _consent_events(
    m: Municipality, person: Person, code: str, grant: Grant, request_id: str, days: int
) -> list[AuditEvent]:
    """The two entries the consent service writes for an asked and approved request."""
    resident = _resident_stub(person, m.tenant.id)
    events = []
    acts: list[tuple[str, Actor, dict[str, str | int | bool | None]]] = [
        (
            tags.REQUEST_CREATED,
            Actor(type="client", id=grant.client_id),
            {"request": request_id, "resident_known": True, "duration_days": days},
        ),
        (
            tags.REQUEST_APPROVED,
            Actor(type="resident", id=person.pseudonym),
            {
                "request": request_id,
                "narrowed": False,
                "valid_until": grant.valid_until.isoformat(),
                "may_write": ",".join(grant.may_write) or None,
            },
        ),
    ]
    for name, actor, details in acts:
        event = m.services.vault.event(
            m.ctx(actor),
            m.tenant.id,
            name,
            resident=resident,
            categories=grant.categories,
            decision="allow" if name == tags.REQUEST_APPROVED else None,
            details=details,
        )
        events.append(
            dataclasses.replace(
                event,
                client_id=grant.client_id,
                department=code,
                grant_id=grant.id if name == tags.REQUEST_APPROVED else None,
                processing_activity_id=grant.purpose_code,
                legal_basis=grant.legal_basis,
            )
        )
    return events


def add_residents(m: Municipality, count: int) -> None:
    """``count`` residents with their records, grants and audit entries, in one transaction."""
    vault, keys, tenant = m.services.vault, m.services.keys, m.tenant
    residents: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    events: list[AuditEvent] = []
    new_people: list[Person] = []
    new_granted: list[Granted] = []
    for _ in range(count):
        bsn = m.bsn()
        ctx = m.ctx()
        resident_id, data_key, kek = new_id(), crypto.new_key(), tenant.current_kek_version
        residents.append(
            {
                "id": resident_id,
                "tenant_id": tenant.id,
                "bsn_pseudonym": vault.bsn_pseudonym(tenant.id, bsn),
                "bsn_ciphertext": crypto.seal(data_key, bsn.encode(), crypto.bsn_aad(tenant.id, resident_id)),
                "wrapped_data_key": keys.wrap(
                    tenant.id, kek, data_key, crypto.data_key_aad(tenant.id, resident_id, kek)
                ),
                "kek_version": kek,
                "audit_pseudonym": secrets.token_hex(16),
                "created_at": ctx.now,
                "erased_at": None,
            }
        )
        person = Person(resident_id, residents[-1]["audit_pseudonym"])
        stub = _resident_stub(person, tenant.id)
        events.append(vault.event(ctx, tenant.id, tags.RESIDENT_ADDED, resident=stub))

        wanted: list[tuple[str | None, str]] = [(None, "brp.persoon")]
        wanted += [(code, category) for code, _n, category, share in DEPARTMENTS if m.rng.random() < share]
        held: list[tuple[str, int]] = []
        for code, category in wanted:
            record_id, when = new_id(), m.now
            grant: Grant | None = None
            if code is not None and m.rng.random() < GRANT_SHARE:
                department_id, client_id, _category = m.departments[code]
                request_id, days = new_id(), GRANT_DAYS
                grant_row: dict[str, Any] = {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "resident_id": resident_id,
                    "department_id": department_id,
                    "department_code": code,
                    "client_id": client_id,
                    "request_id": request_id,
                    "purpose_code": f"{code}-dienstverlening",
                    "legal_basis": "consent",
                    "categories": sorted([category, "brp.persoon"]),
                    "may_write": [category],
                    "valid_from": m.now,
                    "valid_until": m.now + timedelta(days=days),
                    "revoked_at": None,
                    "revoked_by": None,
                    "refresh_hash": hashlib.sha256(secrets.token_bytes(32)).digest(),
                    "tokens_revoked_before": None,
                    "created_at": m.now,
                }
                grant = Grant.model_construct(**grant_row)
                requests.append(
                    {
                        "id": request_id,
                        "tenant_id": tenant.id,
                        "client_id": client_id,
                        "department_id": department_id,
                        "resident_id": resident_id,
                        "auth_req_hash": auth_req_hash(secrets.token_urlsafe(32)),
                        "purpose_code": grant.purpose_code,
                        "categories": grant.categories,
                        "duration_days": days,
                        "binding_message": None,
                        "status": "approved",
                        "interval": 2,
                        "last_polled_at": m.now,
                        "expires_at": m.now + timedelta(hours=1),
                        "created_at": m.now,
                        "decided_at": m.now,
                        "token_issued_at": m.now,
                    }
                )
                grants.append(grant_row)
                events += _consent_events(m, person, code, grant, request_id, days)
            number = 2 if code is not None and m.rng.random() < SECOND_VERSION_SHARE else 1
            access: AccessGrant | None = None
            if grant is not None:
                # The AccessGrant the consent engine makes of this grant for the department's requests.
                claims = _token(tenant.id, grant.client_id, grant.id, resident_id, m.now)
                decided = ResourceGuard.decide(claims, grant, erased_at=None, token_revoked=False, now=m.now)
                assert isinstance(decided, AccessGrant), decided
                access = decided
            for version in range(1, number + 1):
                data = document(category, m.rng, bsn)
                if (m.records + len(records)) % VALIDATE_EVERY == 0:
                    vault.validate(m.categories[category], data)  # the shape the services would accept
                plaintext = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
                aad = crypto.record_aad(tenant.id, resident_id, record_id, version, category)
                source = "brp" if code is None else f"department:{code}"
                vctx = m.ctx(access.actor if access is not None else OPERATOR)
                versions.append(
                    {
                        "record_id": record_id,
                        "version": version,
                        "tenant_id": tenant.id,
                        "source": source,
                        "created_at": vctx.now,
                        "ciphertext": crypto.seal(data_key, plaintext, aad),
                    }
                )
                events.append(
                    vault.event(
                        vctx,
                        tenant.id,
                        tags.RECORD_IMPORTED if code is None else tags.RECORD_WRITTEN,
                        resident=stub,
                        decision="allow",
                        categories=[category],
                        grant=access,
                        details={"version": version, "source": source},
                    )
                )
            records.append(
                {
                    "id": record_id,
                    "tenant_id": tenant.id,
                    "resident_id": resident_id,
                    "category": category,
                    "current_version": number,
                    "created_at": when,
                    "updated_at": m.now,
                }
            )
            held.append((category, number))
            if access is not None:
                readable = tuple(h for h in held if h[0] in access.categories)
                new_granted.append(Granted(access, person.pseudonym, readable))
        new_people.append(person)
    with m.services.db.session() as session:
        for target, rows in ((RESIDENT, residents), (RECORD, records), (VERSION, versions)):
            session.execute(insert(target), rows)
        if requests:
            session.execute(insert(REQUEST), requests)
            session.execute(insert(GRANT), grants)
        audit_log.append_many(session, events)
        session.commit()
    m.people += new_people
    m.granted += new_granted
    m.records += len(records)
    m.versions += len(versions)
    m.entries += len(events)


def read_event(m: Municipality) -> AuditEvent:
    """A department's read of a granted record, as ``decide_read`` records it (some refused)."""
    granted = m.granted[m.rng.randrange(len(m.granted))]
    category, version = granted.readable[m.rng.randrange(len(granted.readable))]
    access = granted.grant
    stub = Resident.model_construct(id=access.resident_id, audit_pseudonym=granted.pseudonym)
    ctx = m.ctx(access.actor)
    if m.rng.random() < DENY_SHARE:
        reason = m.rng.choice(("category_not_granted", "grant_expired"))
        return m.services.vault.event(
            ctx,
            m.tenant.id,
            tags.RECORD_READ,
            resident=stub,
            decision="deny",
            reason=reason,
            categories=["jeugdzorg.dossier" if reason == "category_not_granted" else category],
            grant=access,
        )
    return m.services.vault.event(
        ctx,
        m.tenant.id,
        tags.RECORD_READ,
        resident=stub,
        decision="allow",
        categories=[category],
        grant=access,
        details={"version": version, "fields": None},
    )


def add_reads(m: Municipality, count: int) -> None:
    events = [read_event(m) for _ in range(count)]
    with m.services.db.session() as session:
        audit_log.append_many(session, events)
        session.commit()
    m.entries += count


def grow(m: Municipality, target: int, per_resident: int, batch: int, say: Callable[[str], None]) -> None:
    """Fill up to ``target`` audit entries: residents first (their share), then department reads."""
    started = last = time.perf_counter()
    first = m.entries
    residents_wanted = max(target // per_resident, len(m.people))
    while m.entries < target:
        missing_people = residents_wanted - len(m.people)
        if not m.granted:  # reads need a granted resident: a few more residents first
            add_residents(m, 20)
        elif missing_people > 0:
            add_residents(m, min(missing_people, max(1, batch // 5), max(1, (target - m.entries) // 5)))
        else:
            add_reads(m, min(batch, target - m.entries))
        now = time.perf_counter()
        if now - last >= 5:
            last = now
            rate = (m.entries - first) / (now - started)
            say(
                f"{m.kind:8} filling {m.entries:>11,} / {target:,} entries  {len(m.people):>9,} residents "
                f"{m.records:>9,} records  {rate:>8,.0f} entries/s  "
                f"eta {(target - m.entries) / max(rate, 1):,.0f} s"
            )


# -- measuring -------------------------------------------------------------------------------------
def timed(samples: int, budget: float, run: Callable[[int], float | None]) -> Latency:
    """Run ``run(i)`` up to ``samples`` times or until ``budget`` seconds are spent (at least 3).

    ``run`` may return the seconds to count itself (to leave its preparation out)."""
    latency = Latency()
    deadline = time.perf_counter() + budget
    for i in range(samples):
        before = time.perf_counter()
        own = run(i)
        latency.add(own if own is not None else time.perf_counter() - before)
        if i >= 2 and time.perf_counter() > deadline:
            break
    return latency


def measure(m: Municipality, samples: int, budget: float) -> dict[str, Latency]:
    services, tenant_id, rng = m.services, m.tenant.id, m.rng
    guard, lean, vault = ResourceGuard, services.lean, services.vault
    out: dict[str, Latency] = {}

    def read(_i: int) -> None:
        granted = m.granted[rng.randrange(len(m.granted))]
        category, _version = granted.readable[rng.randrange(len(granted.readable))]
        now = m.now
        g = granted.grant
        verified = _token(g.tenant_id, g.client_id, g.grant_id, g.resident_id, now)
        prefetch = lean.prefetch(category)  # as the API's record read: grant and record, one statement
        found = prefetch(verified)
        assert found is not None, "a granted resident's grant was not found"
        grant_row, erased_at, revoked = found
        access = guard.decide(verified, grant_row, erased_at=erased_at, token_revoked=revoked, now=now)
        assert isinstance(access, AccessGrant), access
        resident, record, version = prefetch.rows_of(access.grant_id, category)
        ctx = Context(actor=access.actor, trace=TraceContext.new(), now=now)
        content = vault.decide_read(ctx, access, category, resident, record, version).result()
        assert content.category == category

    out["read"] = timed(samples, budget, read)

    def append_one(_i: int) -> None:
        event = read_event(m)
        with services.db.session() as session:
            audit_log.append(session, event)
            session.commit()
        m.entries += 1

    out["append"] = timed(max(samples // 2, 3), budget, append_one)

    def append_batch(_i: int) -> float:
        events = [read_event(m) for _ in range(100)]  # building them is not part of the append
        before = time.perf_counter()
        with services.db.session() as session:
            audit_log.append_many(session, events)
            session.commit()
        m.entries += 100
        return time.perf_counter() - before

    out["batch100"] = timed(max(samples // 20, 3), budget, append_batch)

    with services.db.read_session() as session:
        size = audit_log.log_head(session, tenant_id).tree_size
        assert size == m.entries, (size, m.entries)

        def proof(_i: int) -> None:
            audit_log.inclusion_proof(session, tenant_id, rng.randrange(size), size)

        out["proof"] = timed(samples, budget, proof)

    def search(involving: bool) -> Callable[[int], None]:
        def run(_i: int) -> None:
            person = m.people[rng.randrange(len(m.people))]
            query = (
                AuditQuery(involving=person.pseudonym)
                if involving
                else AuditQuery(data_subject_id=person.pseudonym)
            )
            with services.db.read_session() as session:
                page = audit_log.search(session, tenant_id, query, limit=50)
            assert page.entries, "every resident has entries"

        return run

    out["search_involving"] = timed(max(samples // 10, 3), budget, search(involving=True))
    out["search_subject"] = timed(max(samples // 10, 3), budget, search(involving=False))

    def onboard(_i: int) -> None:
        ctx = m.ctx()
        bsn = m.bsn()
        with services.db.session() as session:
            resident = services.vault.add_resident(session, ctx, m.tenant, bsn)
            services.vault.put_record(
                session,
                ctx,
                resident,
                "brp.persoon",
                document("brp.persoon", rng, bsn),
                source="brp",
                event_name=tags.RECORD_IMPORTED,
            )
        m.people.append(Person(resident.id, resident.audit_pseudonym))
        m.records += 1
        m.versions += 1
        m.entries += 2

    out["onboard"] = timed(max(samples // 20, 3), budget, onboard)
    return out


def sizes(m: Municipality) -> dict[str, int]:
    """Bytes per table (with its indexes and TOAST) and of the whole database (key ``_database``)."""
    db = m.services.db
    found: dict[str, int] = dict.fromkeys(TABLES, 0)
    if db.is_sqlite:
        # A plain connection outside the units of work: a checkpoint first, so the file holds it all.
        path = make_url(db.url).database
        assert path is not None
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            owner: dict[str, str] = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
            for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                table_name = owner.get(name, name)
                if table_name in found:
                    found[table_name] += int(size)
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            found["_database"] = int(page_size) * int(conn.execute("PRAGMA page_count").fetchone()[0])
        finally:
            conn.close()
        return found
    with db.write_engine.connect() as pg:
        for name in TABLES:
            found[name] = int(pg.execute(text(f"SELECT pg_total_relation_size('{name}')")).scalar_one())
        found["_database"] = int(pg.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        pg.rollback()
    return found


def checkpoint(m: Municipality, signer: Ed25519CheckpointSigner) -> float:
    before = time.perf_counter()
    with m.services.db.session() as session:
        audit_log.sign_checkpoint(session, m.tenant.id, signer, m.tick())
        session.commit()
    return (time.perf_counter() - before) * 1000


# -- one database ----------------------------------------------------------------------------------
@contextmanager
def services_on(
    kind: str, keep: bool, say: Callable[[str], None], database_url: str | None = None
) -> Iterator[Services]:
    """The services on a fresh, migrated database: a scratch PostgreSQL database or SQLite file,
    or ``database_url`` when given (an empty database or schema the caller owns: the tests)."""
    directory = tempfile.mkdtemp(prefix="kluis-bench-growth-")
    admin = None
    name = f"kluis_bench_growth_{secrets.token_hex(4)}"
    if database_url is not None:
        pass
    elif kind == "postgres":
        admin = create_engine(POSTGRES + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        database_url = f"{POSTGRES}/{name}"
    elif kind != "sqlite":
        raise SystemExit(f"unknown database {kind!r}: sqlite or postgres")
    settings = Settings(
        env="development",
        data_dir=Path(directory),
        database_url=database_url,
        key_provider="file",
        key_file=Path(directory) / "keys.json",  # never the operator's key file from the environment
        sqlite_synchronous="FULL",
    )
    services = build_services(settings)
    try:
        services.db.migrate()
        yield services
    finally:
        services.close()
        if keep:
            say(f"{kind:8} kept: {database_url or directory} (key file in {directory})")
        else:
            shutil.rmtree(directory, ignore_errors=True)
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        if admin is not None:
            admin.dispose()


def run(
    kind: str,
    steps: Sequence[int],
    *,
    per_resident: int = 10,
    batch: int = 1000,
    samples: int = 400,
    budget: float = 20.0,
    verify: bool = True,
    seed: int = 1,
    keep: bool = False,
    say: Callable[[str], None] = print,
    database_url: str | None = None,
) -> list[Step]:
    """Grow one municipality on ``kind`` through ``steps`` (audit log sizes) and measure at each."""
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="checkpoint-bench")
    signer = Ed25519CheckpointSigner(key)
    results: list[Step] = []
    with services_on(kind, keep, say, database_url) as services:
        m = set_up(services, kind, seed)
        for target in sorted(steps):
            started, first = time.perf_counter(), m.entries
            grow(m, target, per_resident, batch, say)
            fill = time.perf_counter() - started
            if not services.db.is_sqlite:
                with services.db.write_engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            cp_ms = checkpoint(m, signer)
            at = (m.entries, len(m.people), m.records, m.versions, len(m.granted))
            say(f"{kind:8} {m.entries:,} entries in {fill:,.1f} s; measuring")
            latency = measure(m, samples, budget)
            step = Step(
                db=kind,
                entries=at[0],
                residents=at[1],
                records=at[2],
                versions=at[3],
                grants=at[4],
                fill_seconds=round(fill, 1),
                fill_entries_per_s=round((at[0] - first) / fill, 1) if fill else 0.0,
                latency={k: v.summary() for k, v in latency.items()},
                sizes=sizes(m),
                checkpoint_ms=round(cp_ms, 2),
            )
            if verify and target == max(steps):
                step.verify = verify_all(m, key)
            results.append(step)
            say(row(step))
    return results


def verify_all(m: Municipality, key: jwk.JWK) -> dict[str, float]:
    verifier = CheckpointVerifier({"keys": [key.export_public(as_dict=True)]})
    with m.services.db.read_session() as session:
        before = time.perf_counter()
        result = verify_log(session, m.tenant.id, verifier)
        seconds = time.perf_counter() - before
    if not result.ok:
        raise SystemExit(f"{m.kind}: the audit log does not verify: {result}")
    return {
        "entries": result.entries,
        "seconds": round(seconds, 1),
        "entries_per_s": round(result.entries / seconds),
    }


# -- output ----------------------------------------------------------------------------------------
COLUMNS = (
    ("read", "read"),
    ("append", "append"),
    ("batch100", "batch of 100"),
    ("proof", "proof"),
    ("search_involving", "search involving"),
    ("search_subject", "search subject"),
    ("onboard", "onboard"),
)


def row(step: Step) -> str:
    cells = "  ".join(
        f"{label} {step.latency[k]['p50_ms']:.2f}/{step.latency[k]['p99_ms']:.2f}" for k, label in COLUMNS
    )
    per = step.per()
    return (
        f"{step.db:8} {step.entries:>10,} entries {step.residents:>8,} residents {step.records:>8,} records "
        f"{step.grants:>7,} grants | p50/p99 ms: {cells} | {step.total_bytes / 2**20:,.0f} MiB, "
        f"{per['bytes_per_entry']:,.0f} B/entry, {per['bytes_per_record']:,.0f} B/record"
        + (f" | verify {step.verify['seconds']} s" if step.verify else "")
    )


def table_text(results: Sequence[Step]) -> str:
    head = (
        "| db | entries | residents | records | grants | fill entries/s | read p50/p99 | append p50/p99 "
        "| batch of 100 p50/p99 | proof p50/p99 | search involving p50/p99 | search subject p50/p99 "
        "| onboard p50/p99 | size MiB | B/entry | B/record |"
    )
    lines = [head, "|" + "---|" * 16]
    for s in results:
        lat = s.latency
        per = s.per()

        def cell(k: str, lat: dict[str, dict[str, float | int]] = lat) -> str:
            return f"{lat[k]['p50_ms']:.2f} / {lat[k]['p99_ms']:.2f}"

        lines.append(
            f"| {s.db} | {s.entries:,} | {s.residents:,} | {s.records:,} | {s.grants:,} | "
            f"{s.fill_entries_per_s:,.0f} | {cell('read')} | {cell('append')} | {cell('batch100')} | "
            f"{cell('proof')} | {cell('search_involving')} | {cell('search_subject')} | {cell('onboard')} | "
            f"{s.total_bytes / 2**20:,.0f} | {per['bytes_per_entry']:,.0f} | {per['bytes_per_record']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_growth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both (default: both)")
    parser.add_argument(
        "--steps", default=DEFAULT_STEPS, help=f"audit log sizes to measure at (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--entries-per-resident", type=int, default=10, help="audit entries per resident (default 10)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="audit entries per fill transaction")
    parser.add_argument(
        "--samples", type=int, default=400, help="reads and proofs timed per step (fewer of the rest)"
    )
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds at most per measured operation and step"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip verify_log at the last step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the databases (and print where they are)")
    args = parser.parse_args(argv)
    steps = sorted({int(s.replace("_", "")) for s in args.steps.split(",") if s.strip()})

    def say(line: str) -> None:
        print(line, flush=True)

    say(
        f"bench_growth {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {os.getloadavg()}"
    )
    results: list[Step] = []
    for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
        started = time.perf_counter()
        results += run(
            kind,
            steps,
            per_resident=args.entries_per_resident,
            batch=args.batch,
            samples=args.samples,
            budget=args.budget,
            verify=not args.no_verify,
            seed=args.seed,
            keep=args.keep,
            say=say,
        )
        say(f"{kind:8} done in {time.perf_counter() - started:,.0f} s, load {os.getloadavg()}")
        time.sleep(2)  # let the previous run's writes settle before the next database
    say("")
    say(table_text(results))
    for step in results:
        if step.verify:
            say(f"{step.db}: verify_log of {step.verify['entries']:,.0f} entries: {step.verify['seconds']} s")
    if args.json:
        args.json.write_text(
            json.dumps([{**dataclasses.asdict(s), **s.per()} for s in results], indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
