"""Errors of the vault.

    VaultError
    ├── NotFoundError                 tenant, resident, category or record unknown (or not yours)
    │   ├── TenantNotFoundError
    │   ├── ResidentNotFoundError
    │   ├── CategoryNotFoundError
    │   └── RecordNotFoundError
    ├── InvalidInputError             refused before anything is written
    │   ├── InvalidBsnError           fails the 11-proef
    │   ├── InvalidRecordError        violates the category's JSON Schema / not a JSON object
    │   └── InvalidSlugError
    ├── ConflictError
    │   ├── DuplicateResidentError
    │   └── DuplicateTenantError
    ├── ResidentErasedError           the data key is destroyed; nothing can be read or written
    ├── AccessDeniedError             the access grant does not cover the act (reason is audited)
    ├── DecryptionError               one error for every decryption failure (wrong row, corrupt, bad key)
    └── KeyProviderError              the key-encryption key is unavailable

Messages are safe to show: they never contain a BSN, a name or record content.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base of every vault error."""


class NotFoundError(VaultError):
    pass


class TenantNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("unknown tenant")


class ResidentNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("unknown resident")


class CategoryNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("unknown category")


class RecordNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("no such record")


class InvalidInputError(VaultError):
    pass


class InvalidBsnError(InvalidInputError):
    def __init__(self) -> None:
        super().__init__("invalid BSN: it must be nine digits that pass the 11-proef")


class InvalidRecordError(InvalidInputError):
    pass


class InvalidSlugError(InvalidInputError):
    pass


class ConflictError(VaultError):
    pass


class DuplicateResidentError(ConflictError):
    def __init__(self) -> None:
        super().__init__("this resident already exists in this municipality")


class DuplicateTenantError(ConflictError):
    def __init__(self) -> None:
        super().__init__("a municipality with this slug already exists")


class ResidentErasedError(VaultError):
    def __init__(self) -> None:
        super().__init__("this resident's vault has been erased")


class AccessDeniedError(VaultError):
    """The act is not covered by the access grant. ``reason`` is a code for the audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__("access denied")
        self.reason = reason


class DecryptionError(VaultError):
    def __init__(self) -> None:
        super().__init__("the record cannot be decrypted")


class KeyProviderError(VaultError):
    pass
