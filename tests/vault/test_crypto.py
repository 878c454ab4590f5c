import json
from pathlib import Path

import pytest

from vault import crypto
from vault.errors import DecryptionError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "record_envelope_v1.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["category"])
def test_record_envelope_known_answers(vector: dict[str, str]) -> None:
    key = bytes.fromhex(vector["key"])
    aad = crypto.record_aad(
        vector["tenant"], vector["resident"], vector["record"], int(vector["version"]), vector["category"]
    )
    assert aad.hex() == vector["aad"]
    sealed = crypto.seal(key, bytes.fromhex(vector["plaintext"]), aad, nonce=bytes.fromhex(vector["nonce"]))
    assert sealed.hex() == vector["envelope"]
    assert crypto.open_sealed(key, sealed, aad).hex() == vector["plaintext"]


def test_every_failure_is_one_error() -> None:
    key = crypto.new_key()
    aad = crypto.record_aad("t", "r", "rec", 1, "inkomen")
    sealed = crypto.seal(key, b'{"a":1}', aad)
    for i in range(len(sealed)):
        flipped = sealed[:i] + bytes([sealed[i] ^ 0x01]) + sealed[i + 1 :]
        with pytest.raises(DecryptionError):
            crypto.open_sealed(key, flipped, aad)
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key, sealed, crypto.record_aad("t", "r", "rec", 2, "inkomen"))
    with pytest.raises(DecryptionError):
        crypto.open_sealed(crypto.new_key(), sealed, aad)
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key, sealed[:10], aad)
    with pytest.raises(DecryptionError):
        crypto.open_sealed(key[:16], sealed, aad)


def test_nonces_are_fresh() -> None:
    key = crypto.new_key()
    nonces = {crypto.seal(key, b"x", b"")[1:13] for _ in range(1000)}
    assert len(nonces) == 1000
