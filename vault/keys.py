"""Key providers: where the key-encryption keys (KEKs) and pseudonym keys live.

The vault never sees a KEK through this interface's callers: it hands a data key in and gets a
wrapped blob back, so an HSM or KMS provider can keep the KEKs inside (see ``docs/keys.md``).
The default ``FileKeyProvider`` keeps them in one JSON file with mode 0600 next to the database.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from vault import crypto
from vault.errors import DecryptionError, KeyProviderError

SYSTEM_TENANT = "_system"  # deployment-wide secrets (token and checkpoint signing keys)


class KeyProvider(Protocol):
    """Holds KEKs by (tenant, version) and a pseudonym key per tenant."""

    name: str

    def create_kek(self, tenant_id: str, version: int) -> None:
        """Create KEK ``version`` for the tenant (idempotent for an existing version)."""

    def has_kek(self, tenant_id: str, version: int) -> bool: ...

    def destroy_kek(self, tenant_id: str, version: int) -> None:
        """Forget KEK ``version``: everything still wrapped by it becomes unreadable."""

    def wrap(self, tenant_id: str, version: int, key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, tenant_id: str, version: int, wrapped: bytes, aad: bytes) -> bytes:
        """``DecryptionError`` if it does not open, ``KeyProviderError`` if the KEK is gone."""

    def pseudonym(self, tenant_id: str, value: bytes) -> bytes:
        """Keyed HMAC-SHA256 of ``value`` with the tenant's pseudonym key (created on first use)."""

    def check(self) -> list[str]:
        """Configuration problems (for ``kluis doctor`` and readiness), empty when all is well."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class FileKeyProvider:
    """KEKs in a local JSON file (mode 0600). Safe for several processes on one host (flock)."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, Any] | None = None

    # -- file handling ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            with self.path.open("rb") as f:
                data: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return {"format": 1, "tenants": {}}
        except (OSError, ValueError) as exc:
            raise KeyProviderError("the key file cannot be read") from exc
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self.path.chmod(0o600)
        self._cache = data

    def _tenant(self, tenant_id: str, *, refresh: bool = False) -> dict[str, Any] | None:
        if self._cache is None or refresh:
            self._cache = self._read()
        found: dict[str, Any] | None = self._cache["tenants"].get(tenant_id)
        return found

    def _mutate(self, tenant_id: str, change: Any) -> None:
        with self._locked():
            data = self._read()
            entry = data["tenants"].setdefault(tenant_id, {"kek": {}})
            change(entry)
            self._write(data)

    def _kek(self, tenant_id: str, version: int) -> bytes:
        for refresh in (False, True):  # another process may have created it since we last read
            entry = self._tenant(tenant_id, refresh=refresh)
            if entry is not None and str(version) in entry["kek"]:
                return _unb64(entry["kek"][str(version)])
        raise KeyProviderError("the key-encryption key is not available")

    # -- KeyProvider ------------------------------------------------------------------------------
    def create_kek(self, tenant_id: str, version: int) -> None:
        def change(entry: dict[str, Any]) -> None:
            entry["kek"].setdefault(str(version), _b64(crypto.new_key()))
            entry.setdefault("pseudonym", _b64(crypto.new_key()))

        self._mutate(tenant_id, change)

    def has_kek(self, tenant_id: str, version: int) -> bool:
        entry = self._tenant(tenant_id, refresh=True)
        return entry is not None and str(version) in entry["kek"]

    def destroy_kek(self, tenant_id: str, version: int) -> None:
        self._mutate(tenant_id, lambda entry: entry["kek"].pop(str(version), None))

    def wrap(self, tenant_id: str, version: int, key: bytes, aad: bytes) -> bytes:
        return crypto.seal(self._kek(tenant_id, version), key, aad)

    def unwrap(self, tenant_id: str, version: int, wrapped: bytes, aad: bytes) -> bytes:
        return crypto.open_sealed(self._kek(tenant_id, version), wrapped, aad)

    def pseudonym(self, tenant_id: str, value: bytes) -> bytes:
        entry = self._tenant(tenant_id)
        if entry is None or "pseudonym" not in entry:
            entry = self._tenant(tenant_id, refresh=True)
        if entry is None or "pseudonym" not in entry:
            self._mutate(tenant_id, lambda e: e.setdefault("pseudonym", _b64(crypto.new_key())))
            entry = self._tenant(tenant_id, refresh=True)
        assert entry is not None
        return hmac.new(_unb64(entry["pseudonym"]), value, hashlib.sha256).digest()

    def check(self) -> list[str]:
        problems: list[str] = []
        if not self.path.exists():
            return [f"key file {self.path} does not exist (run `kluis init`)"]
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"key file {self.path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            self._read()
        except KeyProviderError as exc:
            problems.append(str(exc))
        return problems


__all__ = ["SYSTEM_TENANT", "DecryptionError", "FileKeyProvider", "KeyProvider", "KeyProviderError"]
