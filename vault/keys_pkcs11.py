"""A key provider on a PKCS#11 token (an HSM; SoftHSM2 in the tests).

The KEKs (AES-256) and pseudonym keys (HMAC-SHA256) are created *inside* the token as
non-extractable, sensitive objects; wrapping, unwrapping and pseudonyms are token operations, so the
keys never exist in Kluis's memory. Wrapped blobs use the same envelope as the file provider
(``0x01 ‖ nonce ‖ ciphertext ‖ tag``); the nonce comes from the token's random generator.

With ``KLUIS_PKCS11_SIGNING_KEYS=true`` the provider is also the ``SigningKeyStore`` of
``vault.signing``: token and checkpoint signing keys are key pairs generated in the token (private
half non-extractable and sensitive) and every signature is a token operation. ES256 signs with
``CKM_ECDSA`` over the SHA-256 digest of the JWS signing input (tokens without ``CKM_ECDSA_SHA256``,
SoftHSM2 among them, offer only the raw mechanism); PKCS#11 returns ``r ‖ s``, exactly the JWS
signature format. EdDSA signs with ``CKM_EDDSA`` (pure Ed25519; SoftHSM2 ≥ 2.6).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pkcs11
from asn1crypto.core import OctetString  # type: ignore[import-untyped]  # python-pkcs11's own ASN.1 library
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import NoSuchKey, PKCS11Error
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

from vault.errors import DecryptionError, KeyProviderError

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
SECRET_TEMPLATE = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.TOKEN: True}
PRIVATE_TEMPLATE = {**SECRET_TEMPLATE, Attribute.PRIVATE: True, Attribute.SIGN: True}
# JWS algorithm -> PKCS#11 key type and curve (OID 1.3.101.112 is Ed25519, RFC 8410)
SIGNING_CURVES: dict[str, tuple[KeyType, str]] = {
    "ES256": (KeyType.EC, "secp256r1"),
    "EdDSA": (KeyType.EC_EDWARDS, "1.3.101.112"),
}
SIGNATURE_BYTES = 64  # r ‖ s of P-256, and an Ed25519 signature


def _curve(alg: str) -> tuple[KeyType, str]:
    found = SIGNING_CURVES.get(alg)
    if found is None:
        raise KeyProviderError("unsupported signing algorithm for the PKCS#11 token")
    return found


def _public_key(alg: str, ec_point: bytes) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    """The public half from the token's ``CKA_EC_POINT`` (a DER OCTET STRING around the point)."""
    try:
        point = bytes(OctetString.load(ec_point).native)
        if alg == "ES256":
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    except ValueError as exc:
        raise KeyProviderError("the token returned an unusable public key") from exc


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

    @staticmethod
    def _signing_label(label: str) -> str:
        if not label.startswith("kluis:signing:"):
            raise KeyProviderError("signing key labels start with kluis:signing:")
        return label

    def _find(
        self, label: str, key_type: KeyType, object_class: ObjectClass = ObjectClass.SECRET_KEY
    ) -> Any | None:
        handle = self._handles.get(label)
        if handle is not None:
            return handle
        try:
            handle = self._session.get_key(label=label, key_type=key_type, object_class=object_class)
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

    # -- SigningKeyStore (vault.signing) -----------------------------------------------------------
    def create_signing_key(
        self, label: str, alg: str
    ) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
        """Generate a key pair for ``alg`` in the token; only the public half comes out."""
        label = self._signing_label(label)
        key_type, curve = _curve(alg)
        with self._lock:
            if self._find(label, key_type, ObjectClass.PRIVATE_KEY) is not None:
                raise KeyProviderError("a signing key with this label already exists")
            try:
                public, private = self._session.generate_keypair(
                    key_type,
                    label=label,
                    store=True,
                    # The public half is published from the database; the token keeps only the private.
                    public_template={
                        Attribute.EC_PARAMS: encode_named_curve_parameters(curve),
                        Attribute.TOKEN: False,
                        Attribute.VERIFY: True,
                    },
                    private_template=PRIVATE_TEMPLATE,
                )
                point = bytes(public[Attribute.EC_POINT])
            except PKCS11Error as exc:
                raise KeyProviderError("the PKCS#11 token cannot create the signing key") from exc
            self._handles[label] = private
        return _public_key(alg, point)

    def sign_with(self, label: str, alg: str, data: bytes) -> bytes:
        """The raw JWS signature of ``data`` by the private key ``label``, made in the token."""
        key_type, _ = _curve(alg)
        with self._lock:
            key = self._find(self._signing_label(label), key_type, ObjectClass.PRIVATE_KEY)
            if key is None:
                raise KeyProviderError("the signing key is not available")
            try:
                if alg == "ES256":
                    signature = key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
                else:
                    signature = key.sign(data, mechanism=Mechanism.EDDSA)
            except PKCS11Error as exc:
                raise KeyProviderError("the PKCS#11 token cannot sign") from exc
        if len(signature) != SIGNATURE_BYTES:
            raise KeyProviderError("the PKCS#11 token returned a signature of the wrong length")
        return bytes(signature)

    def check(self) -> list[str]:
        try:
            with self._lock:
                self._session.generate_random(64)
        except PKCS11Error:
            return ["the PKCS#11 token does not answer"]
        return []
