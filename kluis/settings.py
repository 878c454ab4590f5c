"""Settings, read once from ``KLUIS_*`` environment variables into one object.

The object is created by the composition roots (``create_app()``, the CLI), never at import time,
so tests and several apps in one process can each have their own.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Secrets of source connectors: the configuration names them (``key_ref``), the environment holds them.
CONNECTOR_SECRET_PREFIX = "KLUIS_CONNECTOR_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret


def _connector_secrets_from_environment() -> dict[str, SecretStr]:
    return {
        name: SecretStr(value)
        for name, value in os.environ.items()
        if name.startswith(CONNECTOR_SECRET_PREFIX) and value
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KLUIS_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".kluis")
    database_url: str | None = None
    issuer: str = "http://127.0.0.1:8000"
    base_url: str | None = None
    key_file: Path | None = None
    key_provider: Literal["file", "pkcs11"] = "file"
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "kluis"  # noqa: S105 - a token label, not a secret
    pkcs11_pin: SecretStr | None = None
    # With the PKCS#11 provider: generate new token and checkpoint signing keys inside the HSM and sign
    # there (docs/keys.md). Off: they are generated in software and stored wrapped by the system KEK.
    pkcs11_signing_keys: bool = False
    # FULL makes every commit survive power loss; the hot path groups commits to pay for it once.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    allow_sqlite_in_production: bool = False
    # A managed PostgreSQL whose own storage layer makes commits durable reports fsync (and maybe
    # full_page_writes) off, e.g. Neon: true lets production accept that (synchronous_commit must
    # still be on: kluis doctor).
    postgres_storage_is_durable: bool = False
    allow_client_secret_in_production: bool = False
    # ``/metrics`` answers only with ``Authorization: Bearer <this>`` when set; production requires
    # it unless the operator states that /metrics is reachable from the internal network only.
    metrics_token: SecretStr | None = None
    allow_public_metrics_in_production: bool = False
    session_secret: str | None = None
    access_token_lifetime_seconds: int = Field(default=300, ge=30, le=300)
    consent_request_lifetime_seconds: int = Field(default=3600, ge=60)
    poll_interval_seconds: int = Field(default=2, ge=1)
    max_body_bytes: int = 256 * 1024
    rate_limit_per_minute: int = 6000  # per department client, on the data API
    # Per client address on the OAuth endpoints that authenticate clients (token, bc-authorize,
    # introspect, revoke): a cap on guessing and on the database work of failed authentications.
    oauth_rate_limit_per_minute: int = Field(default=600, ge=1)
    # Per client address on the logins of the portal and the console (the OpenID Provider's start
    # and callback, and the test login): each start writes a session, each callback asks the
    # provider; the provider (DigiD) has limits of its own.
    login_rate_limit_per_minute: int = Field(default=60, ge=1)
    # New sessions of visitors without one (a page with a form stores a session for its CSRF token)
    # per client address and minute, portal and console together: over it the page is still shown,
    # but nothing is stored, which bounds how fast anonymous page views from one address fill the
    # session table.
    new_session_rate_limit_per_minute: int = Field(default=120, ge=1)
    # Shared store for rate-limit counters of several nodes (e.g. redis://127.0.0.1:6379/0).
    redis_url: str | None = None
    # How often each node signs audit checkpoints for logs that grew (0: only on demand). Every
    # signing holds the log's lock for ~15-30 ms, during which the read path's commits wait: at
    # 5 s that was the data API's p99 on a slow machine (docs/performance.md); anyone who needs a
    # fresher checkpoint gets one on demand (GET /api/v1/audit/checkpoint signs what is new).
    checkpoint_interval_seconds: float = Field(default=30.0, ge=0)
    # How often each node deletes expired portal sessions, used assertions and revoked tokens
    # (kluis/housekeeping.py; 0: only by `kluis purge-expired`, e.g. from cron).
    housekeeping_interval_seconds: float = Field(default=3600.0, ge=0)
    # The resident portal (kluis/web). One portal serves one municipality: its slug, or the only one.
    portal_tenant: str | None = None
    # OpenID Provider for resident login (production: a DigiD broker); the BSN comes from a claim.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_bsn_claim: str = "bsn"
    oidc_scope: str = "openid"
    session_idle_minutes: int = Field(default=15, ge=1, le=120)
    session_max_hours: int = Field(default=8, ge=1, le=24)
    # The privacy officer's console (kluis/console). Officers log in at the same OpenID Provider; the
    # role claim (a string or a list) must hold "privacy_officer", the tenant claim (if set) names the
    # municipality's slug, else the portal's municipality applies.
    oidc_role_claim: str = "roles"
    oidc_tenant_claim: str | None = None
    # Verify every audit log and checkpoint this often (minutes); unset: 60 in production, off in
    # development; 0: off.
    audit_verify_interval_minutes: int | None = Field(default=None, ge=0, le=7 * 24 * 60)
    # Of those scheduled runs, walk each log completely at least this often (hours); in between a
    # run checks only what was added since the last good run, from a signed checkpoint on
    # (``audit.verify``: incremental). 0: every scheduled run walks the whole log.
    audit_full_verify_interval_hours: int = Field(default=7 * 24, ge=0, le=90 * 24)
    # Source connectors (docs/connectors.md): a JSON file (default ``<data dir>/connectors.json``);
    # the secrets it refers to come from ``KLUIS_CONNECTOR_SECRET_*`` environment variables.
    connectors_file: Path | None = None
    connector_secrets: dict[str, SecretStr] = Field(
        default_factory=_connector_secrets_from_environment, repr=False
    )

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def dev_login_enabled(self) -> bool:
        """The built-in test login: development only, never in production."""
        return not self.is_production

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kluis.db').resolve()}"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file if self.key_file is not None else self.data_dir / "keys.json"

    @property
    def resolved_connectors_file(self) -> Path:
        return self.connectors_file if self.connectors_file is not None else self.data_dir / "connectors.json"

    @property
    def public_base_url(self) -> str:
        return (self.base_url or self.issuer).rstrip("/")
