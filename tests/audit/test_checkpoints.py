"""Checkpoint signing and the strict verifier: known answers, then everything it must refuse."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk, jws

from audit.checkpoints import (
    CheckpointPayload,
    CheckpointVerifier,
    Ed25519CheckpointSigner,
    parse_payload,
)
from audit.errors import CheckpointSignatureError

VECTOR = json.loads((Path(__file__).parent / "vectors" / "checkpoint.json").read_text())
KEY = jwk.JWK(**VECTOR["jwk"])
KEY_ID = VECTOR["jwk"]["kid"]
PUBLIC = {"keys": [KEY.export_public(as_dict=True)]}
PAYLOAD = CheckpointPayload(
    origin=VECTOR["payload"]["origin"],
    tree_size=VECTOR["payload"]["tree_size"],
    root_hash=bytes.fromhex(VECTOR["payload"]["root_hash"]),
    timestamp_ms=VECTOR["payload"]["timestamp_ms"],
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: bytes | dict[str, Any], payload: bytes, key: jwk.JWK = KEY) -> str:
    """A token with a *valid* Ed25519 signature over arbitrary header and payload bytes: refusals
    below are then about strictness, not about the signature."""
    raw_header = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    signing_input = f"{b64url(raw_header)}.{b64url(payload)}"
    signature = key.get_op_key("sign").sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


HEADER = {"alg": "EdDSA", "kid": KEY_ID, "typ": "kluis-checkpoint+jws"}


def test_jwcrypto_reproduces_rfc8037_a4() -> None:
    case = VECTOR["rfc8037_a4"]
    token = jws.JWS(case["payload"].encode())
    token.add_signature(KEY, alg="EdDSA", protected=case["protected"])
    assert token.serialize(compact=True) == case["jws"]


def test_checkpoint_known_answer() -> None:
    assert PAYLOAD.to_bytes().decode() == VECTOR["payload_bytes"]
    token = Ed25519CheckpointSigner(KEY).sign(PAYLOAD.to_bytes())
    assert token == VECTOR["jws"]
    verified = CheckpointVerifier(PUBLIC).verify(token)
    assert (verified.payload, verified.kid) == (PAYLOAD, KEY_ID)


def test_forge_helper_makes_tokens_the_verifier_accepts() -> None:
    assert CheckpointVerifier(PUBLIC).verify(forge(HEADER, PAYLOAD.to_bytes())).payload == PAYLOAD


def _payload(**changes: object) -> bytes:
    body = json.loads(PAYLOAD.to_bytes())
    body.update(changes)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _reordered() -> bytes:
    body = json.loads(PAYLOAD.to_bytes())
    return json.dumps(dict(reversed(body.items())), separators=(",", ":")).encode()


REFUSED = {
    "alg none": lambda: (
        b64url(json.dumps({**HEADER, "alg": "none"}).encode()) + "." + b64url(PAYLOAD.to_bytes()) + "."
    ),
    "alg ES256": lambda: forge({**HEADER, "alg": "ES256"}, PAYLOAD.to_bytes()),
    "alg HS256": lambda: forge({**HEADER, "alg": "HS256"}, PAYLOAD.to_bytes()),
    "extra header member": lambda: forge({**HEADER, "crit": ["exp"]}, PAYLOAD.to_bytes()),
    "jwk in header": lambda: forge({**HEADER, "jwk": KEY.export_public(as_dict=True)}, PAYLOAD.to_bytes()),
    "no typ": lambda: forge({"alg": "EdDSA", "kid": KEY_ID}, PAYLOAD.to_bytes()),
    "other typ": lambda: forge({**HEADER, "typ": "JWT"}, PAYLOAD.to_bytes()),
    "unknown kid": lambda: forge({**HEADER, "kid": "someone-else"}, PAYLOAD.to_bytes()),
    "duplicate header member": lambda: forge(
        b'{"alg":"EdDSA","alg":"EdDSA","kid":"' + KEY_ID.encode() + b'","typ":"kluis-checkpoint+jws"}',
        PAYLOAD.to_bytes(),
    ),
    "padded base64": lambda: VECTOR["jws"].replace(".", "=.", 1),
    "standard base64 alphabet": lambda: VECTOR["jws"].replace("-", "+").replace("_", "/"),
    "non-canonical last character": lambda: VECTOR["jws"][:-1] + chr(ord(VECTOR["jws"][-1]) + 1),
    "truncated signature": lambda: VECTOR["jws"][:-4],
    "JSON serialization": lambda: json.dumps({"payload": "x", "signature": "y"}),
    "two parts": lambda: VECTOR["jws"].rsplit(".", 1)[0],
    "very long": lambda: VECTOR["jws"] + "A" * 10_000,
    "payload extra member": lambda: forge(HEADER, _payload(note="x")),
    "payload missing member": lambda: forge(HEADER, _payload(origin=None).replace(b'"origin":null,', b"")),
    "payload whitespace": lambda: forge(
        HEADER, json.dumps(json.loads(PAYLOAD.to_bytes()), sort_keys=True).encode()
    ),
    "payload key order": lambda: forge(HEADER, _reordered()),
    "payload bool size": lambda: forge(HEADER, _payload(tree_size=True)),
    "payload negative size": lambda: forge(HEADER, _payload(tree_size=-1)),
    "payload float size": lambda: forge(HEADER, _payload(tree_size=8.0)),
    "payload short root": lambda: forge(HEADER, _payload(root_hash=base64.b64encode(b"\x00" * 31).decode())),
    "payload urlsafe root": lambda: forge(
        HEADER, _payload(root_hash=base64.urlsafe_b64encode(PAYLOAD.root_hash).decode())
    ),
    "payload control origin": lambda: forge(HEADER, _payload(origin="kluis/x\n8")),
    "payload not JSON": lambda: forge(HEADER, b"kluis/gemeente-utrecht\n8\nXcnae\n"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_the_verifier_refuses(name: str) -> None:
    with pytest.raises(CheckpointSignatureError):
        CheckpointVerifier(PUBLIC).verify(REFUSED[name]())


def test_a_key_with_the_same_kid_is_not_the_key() -> None:
    impostor = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid=KEY_ID)
    with pytest.raises(CheckpointSignatureError):
        CheckpointVerifier(PUBLIC).verify(Ed25519CheckpointSigner(impostor).sign(PAYLOAD.to_bytes()))


def test_pinned_key_sets_keep_only_ed25519_signature_keys() -> None:
    ec = jwk.JWK.generate(kty="EC", crv="P-256", kid="token-1").export_public(as_dict=True)
    encryption = {**KEY.export_public(as_dict=True), "kid": "enc", "use": "enc"}
    verifier = CheckpointVerifier({"keys": [ec, encryption, *PUBLIC["keys"]]})
    assert verifier.kids == {KEY_ID}
    with pytest.raises(ValueError):
        CheckpointVerifier({"keys": [ec]})
    assert CheckpointVerifier(json.dumps(PUBLIC)).kids == {KEY_ID}
    key_set = jwk.JWKSet()
    key_set.add(KEY)
    assert CheckpointVerifier(key_set).kids == {KEY_ID}  # private parts are never kept


def test_signers_need_a_private_ed25519_key_with_a_kid() -> None:
    with pytest.raises(ValueError):
        Ed25519CheckpointSigner(jwk.JWK.generate(kty="EC", crv="P-256", kid="x"))
    with pytest.raises(ValueError):
        Ed25519CheckpointSigner(jwk.JWK(**KEY.export_public(as_dict=True)))
    with pytest.raises(ValueError):
        Ed25519CheckpointSigner(jwk.JWK.generate(kty="OKP", crv="Ed25519"))


def test_payload_parsing_round_trips() -> None:
    assert parse_payload(PAYLOAD.to_bytes()) == PAYLOAD


@pytest.mark.parametrize(
    "document",
    [
        [1],
        {"keys": [1]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "!!"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": VECTOR["jwk"]["x"]}]},
    ],
)
def test_malformed_key_sets_pin_nothing(document: object) -> None:
    with pytest.raises(ValueError):
        CheckpointVerifier(document)
