"""The composition root: turns settings into the database, key provider and services.

Both entry points (``create_app()`` and the CLI) build one ``Services`` from one ``Settings``;
nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from audit import services as audit_log
from audit import tags
from audit.checkpoints import TYP as CHECKPOINT_TYP
from audit.checkpoints import CheckpointSigner
from audit.errors import CheckpointRefusedError, LogStateError
from audit.schemas import Actor, AuditEvent, Checkpoint, TraceContext
from consent.clients import ClientService
from consent.oauth import OAuthServer
from consent.purposes import PurposeService
from consent.requests import ConsentService
from consent.schemas import OAuthConfig
from consent.services import DepartmentService, build_consent
from kluis.api.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from kluis.db import Database
from kluis.group_commit import AuditGroupCommitter, group_committer
from kluis.hotpath import LeanReads
from kluis.observability import Metrics, StoreQueries
from kluis.settings import Settings
from vault.errors import KeyProviderError
from vault.keys import FileKeyProvider, KeyProvider
from vault.models import SigningKey
from vault.services import VaultService
from vault.signing import SigningKeyService

if TYPE_CHECKING:
    from kluis.imports import Connectors


def utcnow() -> datetime:
    """The real clock, injected into services (which never read the clock themselves)."""
    return datetime.now(UTC)


def build_key_provider(settings: Settings) -> KeyProvider:
    if settings.key_provider == "pkcs11":
        from vault.keys_pkcs11 import Pkcs11KeyProvider

        if settings.pkcs11_pin is None:
            raise KeyProviderError("KLUIS_PKCS11_PIN is required for the PKCS#11 key provider")
        return Pkcs11KeyProvider(
            settings.pkcs11_module, settings.pkcs11_token_label, settings.pkcs11_pin.get_secret_value()
        )
    return FileKeyProvider(settings.resolved_key_file)


def build_signing(settings: Settings, keys: KeyProvider) -> SigningKeyService:
    """The signing keys: wrapped in the database, or (``KLUIS_PKCS11_SIGNING_KEYS``) in the HSM."""
    if not settings.pkcs11_signing_keys:
        return SigningKeyService(keys)
    from vault.keys_pkcs11 import Pkcs11KeyProvider

    if not isinstance(keys, Pkcs11KeyProvider):
        raise KeyProviderError("KLUIS_PKCS11_SIGNING_KEYS=true needs KLUIS_KEY_PROVIDER=pkcs11")
    return SigningKeyService(keys, store=keys)


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyProvider
    vault: VaultService
    departments: DepartmentService
    signing: SigningKeyService
    consent: ConsentService  # consent requests, the resident's decisions, grants
    oauth: OAuthServer  # the authorization server (.tokens, .guard for bearer tokens, .config)
    clients: ClientService
    purposes: PurposeService
    metrics: Metrics = field(default_factory=Metrics)  # /metrics of every app on these services
    # Access tokens being verified for the first time, each with the future its verification sets
    # when done (kluis.api.auth: concurrent first reads of one token verify it once).
    first_verifications: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    # The minute (epoch // 60) of each client's last audited rate-limit refusal on this node
    # (kluis.api.dpop: one entry per client and minute, not one per refused request).
    rate_limit_audited: dict[str, int] = field(default_factory=dict)
    _audit_writer: AuditGroupCommitter | None = None
    _connectors: Connectors | None = None
    _lean: LeanReads | None = None
    _rate_limiter: RateLimiter | None = None

    @property
    def rate_limiter(self) -> RateLimiter:
        """Per-client request counters: in this process, or shared between nodes through Redis."""
        if self._rate_limiter is None:
            url = self.settings.redis_url
            self._rate_limiter = RedisRateLimiter(url) if url else MemoryRateLimiter()
        return self._rate_limiter

    @property
    def lean(self) -> LeanReads:
        """Lean look-ups of the department read path (see kluis/hotpath.py)."""
        if self._lean is None:
            self._lean = LeanReads(self.db)
        return self._lean

    @property
    def audit_writer(self) -> AuditGroupCommitter:
        """The group committer of audit entries for the read hot path (started on first use)."""
        if self._audit_writer is None:
            self._audit_writer = group_committer(self.db, on_commit=self.metrics.audit_committed)
        return self._audit_writer

    @property
    def connectors(self) -> Connectors:
        """The source connectors (``KLUIS_CONNECTORS_FILE``), built per tenant on first use."""
        if self._connectors is None:
            from kluis.imports import Connectors

            self._connectors = Connectors(self.settings)
        return self._connectors

    async def aclose(self) -> None:
        """``close`` on the server's event loop: what lives on the loop is closed on it first."""
        if self._audit_writer is not None:
            await self._audit_writer.aclose()  # the batch in flight commits first
        if self._lean is not None:
            await self._lean.aclose()
        self.close()

    def close(self) -> None:
        if self._audit_writer is not None:
            self._audit_writer.close()
        if self._lean is not None:
            self._lean.close()
        if self._connectors is not None:
            self._connectors.close()
        self.db.dispose()


def build_services(settings: Settings) -> Services:
    db = Database(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    keys = build_key_provider(settings)
    vault = VaultService(keys)
    departments = DepartmentService(vault)
    signing = build_signing(settings, keys)
    consent = build_consent(
        vault, signing, oauth_config(settings), departments=departments, jwks_fetcher=fetch_jwks
    )
    return Services(
        settings=settings,
        db=db,
        keys=keys,
        vault=vault,
        departments=departments,
        signing=signing,
        consent=consent.requests,
        oauth=consent.oauth,
        clients=consent.clients,
        purposes=consent.purposes,
        metrics=Metrics(StoreQueries(db, utcnow)),
    )


def oauth_config(settings: Settings) -> OAuthConfig:
    return OAuthConfig(
        issuer=settings.issuer.rstrip("/"),
        base_url=settings.public_base_url,
        access_token_lifetime=settings.access_token_lifetime_seconds,
        request_lifetime=settings.consent_request_lifetime_seconds,
        poll_interval=settings.poll_interval_seconds,
        production=settings.is_production,
        allow_client_secret=not settings.is_production or settings.allow_client_secret_in_production,
    )


def fetch_jwks(url: str) -> Any:
    """A client's published JWKS (for ``private_key_jwt`` with a JWKS URL): short timeouts, no
    redirects, at most 64 KiB. ``consent`` never makes network calls itself; this is injected."""
    import httpx

    with (
        httpx.Client(timeout=httpx.Timeout(5.0), follow_redirects=False) as client,
        client.stream("GET", url, headers={"Accept": "application/json"}) as response,
    ):
        response.raise_for_status()
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > 64 * 1024:
                raise ValueError("JWKS document too large")
    return json.loads(body)


def initialise(services: Services) -> None:
    """``kluis init``: data directory (0700), key file (0600), schema, signing keys. Idempotent."""
    data_dir = services.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    services.signing.ensure_system_kek()
    services.db.migrate()
    with services.db.session() as session:
        now = utcnow()
        services.signing.ensure(session, "token", now)
        services.signing.ensure(session, "checkpoint", now)


class StoredKeyCheckpointSigner:
    """A ``CheckpointSigner`` over a checkpoint key of the ``SigningKeyService`` (wrapped in the
    database or inside the HSM): the exact header of ``audit.checkpoints``, signed by the key."""

    def __init__(self, signing: SigningKeyService, row: SigningKey) -> None:
        if row.alg != "EdDSA":
            raise ValueError("checkpoints are signed with an Ed25519 key")
        self._signing = signing
        self._row = row
        self._header = json.dumps(
            {"alg": "EdDSA", "kid": row.kid, "typ": CHECKPOINT_TYP}, separators=(",", ":")
        )

    @property
    def kid(self) -> str:
        return self._row.kid

    def sign(self, payload: bytes) -> str:
        return self._signing.sign_jws(self._row, self._header, payload)


def signer_from(signing: SigningKeyService, session: Session, now: datetime) -> CheckpointSigner:
    """The active checkpoint key (Ed25519, created and committed on first use) as a signer."""
    return StoredKeyCheckpointSigner(signing, signing.ensure(session, "checkpoint", now))


CHECKPOINT_SIGNER = Actor(type="system", id="kluis:checkpoint-signer")


def sign_checkpoint_audited(
    services: Services,
    tenant_id: str,
    now: datetime,
    *,
    trigger: str,
    trace: TraceContext | None = None,
) -> tuple[Checkpoint, bool]:
    """The tenant's latest checkpoint, newly signed if the log grew past it; and whether it is new.

    A new checkpoint is an audit entry (``audit:checkpoint:signed``, details: the key and the
    ``trigger``) in the transaction that stores it. The entry is appended *first* and the new
    checkpoint covers it — its tree size is the entry's sequence number + 1 — so signing never
    leaves the log longer than its newest checkpoint: the periodic signer does not find its own
    entry next time (no signing loop), and an on-demand request sees an up-to-date checkpoint.
    Nothing new in the log: no entry, no signature. The append takes the log's lock, so two nodes
    signing at once agree: the second finds the first's checkpoint and rolls its entry back.

    Raises ``CheckpointRefusedError`` / ``LogStateError`` (``audit.services.sign_checkpoint``) when
    the log is no consistent extension of its latest checkpoint; either way the outcome is kept for
    ``/metrics`` (``kluis_audit_verification_ok{check="checkpoint"}``).
    """
    with services.db.read_session() as session:
        latest = audit_log.latest_checkpoint(session, tenant_id)
        head = audit_log.log_head(session, tenant_id)
    if latest is not None and (latest.tree_size, latest.root_hash) == (head.tree_size, head.root_hash):
        return latest, False
    try:
        with services.db.session() as session:
            signer = signer_from(services.signing, session, now)  # may commit: creates the first key
            event = AuditEvent(
                tenant=tenant_id,
                name=tags.CHECKPOINT_SIGNED,
                actor=CHECKPOINT_SIGNER,
                trace=trace or TraceContext.new(),
                start_time=now,
                end_time=now,
                details={"kid": signer.kid, "trigger": trigger},
            )
            entry = audit_log.append(session, event)  # holds the log's lock until the session ends
            latest = audit_log.latest_checkpoint(session, tenant_id)
            if (
                latest is not None
                and latest.tree_size == entry.seq
                and latest.root_hash == audit_log.root_at(session, tenant_id, entry.seq)
            ):
                return latest, False  # another signer was first; closing the session drops our entry
            signed = audit_log.sign_checkpoint(session, tenant_id, signer, now)
            session.commit()
    except (CheckpointRefusedError, LogStateError):
        services.metrics.checked(tenant_id, "checkpoint", ok=False, at=now)
        raise
    services.metrics.checked(tenant_id, "checkpoint", ok=True, at=now)
    return signed, True
