"""A key provider on a PKCS#11 token (an HSM; SoftHSM2 in the tests).

The KEKs (AES-256) and pseudonym keys (HMAC-SHA256) are created *inside* the token as
non-extractable, sensitive objects; wrapping, unwrapping and pseudonyms are token operations, so the
keys never exist in Kluis's memory. Wrapped blobs use the same envelope as the file provider
(``0x01 ‖ nonce ‖ ciphertext ‖ tag``); the nonce comes from the token's random generator.
"""

from __future__ import annotations

import threading
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import NoSuchKey, PKCS11Error
from pkcs11.mechanisms import GCMParams

from vault.errors import DecryptionError, KeyProviderError

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
SECRET_TEMPLATE = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.TOKEN: True}


class Pkcs11KeyProvider:
    name = "pkcs11"

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        try:
            self._lib = pkcs11.lib(module)
            token = self._lib.get_token(token_label=token_label)
            self._session = token.open(user_pin=pin, rw=True)
        except (PKCS11Error, RuntimeError, OSError) as exc:
            raise KeyProviderError("the PKCS#11 token cannot be opened") from exc
        # One session shared by all threads: PKCS#11 sessions are not safe for concurrent use.
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}

    @staticmethod
    def _kek_label(tenant_id: str, version: int) -> str:
        return f"kluis:kek:{tenant_id}:{version}"

    @staticmethod
    def _pseudonym_label(tenant_id: str) -> str:
        return f"kluis:pseudonym:{tenant_id}"

    def _find(self, label: str, key_type: KeyType) -> Any | None:
        handle = self._handles.get(label)
        if handle is not None:
            return handle
        try:
            handle = self._session.get_key(
                label=label, key_type=key_type, object_class=ObjectClass.SECRET_KEY
            )
        except NoSuchKey:
            return None
        self._handles[label] = handle
        return handle

    def _kek(self, tenant_id: str, version: int) -> Any:
        handle = self._find(self._kek_label(tenant_id, version), KeyType.AES)
        if handle is None:
            raise KeyProviderError("the key-encryption key is not available")
        return handle

    def create_kek(self, tenant_id: str, version: int) -> None:
        label = self._kek_label(tenant_id, version)
        with self._lock:
            if self._find(label, KeyType.AES) is None:
                self._session.generate_key(
                    KeyType.AES,
                    256,
                    label=label,
                    store=True,
                    template={**SECRET_TEMPLATE, Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
                )
            self._ensure_pseudonym_key(tenant_id)

    def _ensure_pseudonym_key(self, tenant_id: str) -> Any:
        label = self._pseudonym_label(tenant_id)
        handle = self._find(label, KeyType.GENERIC_SECRET)
        if handle is None:
            handle = self._session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=label,
                store=True,
                template={**SECRET_TEMPLATE, Attribute.SIGN: True, Attribute.VERIFY: True},
            )
            self._handles[label] = handle
        return handle

    def has_kek(self, tenant_id: str, version: int) -> bool:
        with self._lock:
            self._handles.pop(self._kek_label(tenant_id, version), None)
            return self._find(self._kek_label(tenant_id, version), KeyType.AES) is not None

    def destroy_kek(self, tenant_id: str, version: int) -> None:
        label = self._kek_label(tenant_id, version)
        with self._lock:
            handle = self._find(label, KeyType.AES)
            if handle is not None:
                handle.destroy()
            self._handles.pop(label, None)

    def wrap(self, tenant_id: str, version: int, key: bytes, aad: bytes) -> bytes:
        with self._lock:
            kek = self._kek(tenant_id, version)
            nonce = self._session.generate_random(NONCE_BYTES * 8)
            sealed = kek.encrypt(key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128))
        return FORMAT_V1 + bytes(nonce) + bytes(sealed)

    def unwrap(self, tenant_id: str, version: int, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) < 1 + NONCE_BYTES + 16 or wrapped[:1] != FORMAT_V1:
            raise DecryptionError
        nonce, body = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
        with self._lock:
            kek = self._kek(tenant_id, version)
            try:
                return bytes(
                    kek.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128))
                )
            except PKCS11Error as exc:
                raise DecryptionError from exc

    def pseudonym(self, tenant_id: str, value: bytes) -> bytes:
        with self._lock:
            key = self._ensure_pseudonym_key(tenant_id)
            return bytes(key.sign(value, mechanism=Mechanism.SHA256_HMAC))

    def check(self) -> list[str]:
        try:
            with self._lock:
                self._session.generate_random(64)
        except PKCS11Error:
            return ["the PKCS#11 token does not answer"]
        return []
