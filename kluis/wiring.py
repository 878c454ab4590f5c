"""The composition root: turns settings into the database, key provider and services.

Both entry points (``create_app()`` and the CLI) build one ``Services`` from one ``Settings``;
nothing here runs at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from consent.services import DepartmentService
from kluis.db import Database
from kluis.settings import Settings
from vault.errors import KeyProviderError
from vault.keys import FileKeyProvider, KeyProvider
from vault.services import VaultService
from vault.signing import SigningKeyService


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


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyProvider
    vault: VaultService
    departments: DepartmentService
    signing: SigningKeyService
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.db.dispose()


def build_services(settings: Settings) -> Services:
    db = Database(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    keys = build_key_provider(settings)
    vault = VaultService(keys)
    return Services(
        settings=settings,
        db=db,
        keys=keys,
        vault=vault,
        departments=DepartmentService(vault),
        signing=SigningKeyService(keys),
    )


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
