"""Envelope encryption recipes: AES-256-GCM with 96-bit random nonces, nothing hand-rolled.

Every failure to open a ciphertext -- wrong key, wrong row, flipped byte, unknown format -- is the
single ``DecryptionError``, so a caller (or an attacker) learns nothing about which check failed.

Envelope format (version 1): ``0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)``.
The associated data is canonical JSON (RFC 8785) naming exactly what the ciphertext belongs to.
"""

from __future__ import annotations

import functools
import os

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import DecryptionError

FORMAT_V1 = b"\x01"
KEY_BYTES = 32
NONCE_BYTES = 12


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, aad: bytes, *, nonce: bytes | None = None) -> bytes:
    """Encrypt ``plaintext`` bound to ``aad``. ``nonce`` is for known-answer tests only."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, envelope: bytes, aad: bytes) -> bytes:
    if len(envelope) < 1 + NONCE_BYTES + 16 or envelope[:1] != FORMAT_V1 or len(key) != KEY_BYTES:
        raise DecryptionError
    nonce, body = envelope[1 : 1 + NONCE_BYTES], envelope[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError from exc


# The two AAD builders of every read are cached: canonical JSON of the same few ids, again and again,
# was a tenth of the read path. They hold identifiers only, nothing secret.
@functools.lru_cache(maxsize=8192)
def record_aad(tenant_id: str, resident_id: str, record_id: str, version: int, category: str) -> bytes:
    return b"kluis-record-v1:" + rfc8785.dumps(
        {
            "tenant": tenant_id,
            "resident": resident_id,
            "record": record_id,
            "version": version,
            "category": category,
        }
    )


def bsn_aad(tenant_id: str, resident_id: str) -> bytes:
    return b"kluis-bsn-v1:" + rfc8785.dumps({"tenant": tenant_id, "resident": resident_id})


@functools.lru_cache(maxsize=8192)
def data_key_aad(tenant_id: str, resident_id: str, kek_version: int) -> bytes:
    return b"kluis-dek-v1:" + rfc8785.dumps(
        {"tenant": tenant_id, "resident": resident_id, "kek_version": kek_version}
    )


def secret_aad(tenant_id: str, purpose: str) -> bytes:
    """Associated data for other secrets wrapped by a tenant KEK (signing keys and the like)."""
    return b"kluis-secret-v1:" + rfc8785.dumps({"tenant": tenant_id, "purpose": purpose})
