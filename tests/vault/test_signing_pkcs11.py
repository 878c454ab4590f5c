"""Token and checkpoint signing keys inside a real SoftHSM2 token (``KLUIS_PKCS11_SIGNING_KEYS``):
generated there as non-extractable keys, every signature made there, verified by jwcrypto against
the published public keys; rotation, keys from before the switch, and the wiring of the setting.

The token is initialised the way ``test_keys_pkcs11.py`` does it. SoftHSM reads its configuration
when the library is initialised, so this module finalises the (process-wide) library before and
after its tests: each module's token directory is the one the library sees while that module runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk, jws, jwt

from audit import services as audit_log
from audit import tags
from audit.checkpoints import CheckpointVerifier
from audit.schemas import Actor, AuditEvent, TraceContext
from consent.schemas import OAuthConfig
from consent.tokens import TokenService
from kluis.db import Database
from kluis.settings import Settings
from kluis.wiring import build_services, initialise, sign_checkpoint_audited, signer_from, utcnow
from vault.errors import KeyProviderError
from vault.keys import SYSTEM_TENANT
from vault.models import SigningKey
from vault.signing import STORE_REFERENCE, SigningKeyService, store_label

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"
NOW = datetime(2026, 3, 3, 13, 2, tzinfo=UTC)
pytestmark = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None and os.environ.get("CI") != "true",
    reason="softhsm2 is not installed (.ci/run installs it; CI never skips)",
)


def _finalise_library() -> None:
    import pkcs11

    loaded: Any = getattr(pkcs11, "_loaded", {}).get(MODULE)
    if loaded is not None and loaded.initialized:
        loaded.finalize()


@pytest.fixture(scope="module")
def token_label(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("softhsm-signing")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    label = "kluis-signing"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "0000", "--pin", PIN],
        check=True,
        capture_output=True,
    )
    _finalise_library()  # the next provider initialises the library on this configuration
    try:
        yield label
    finally:
        _finalise_library()
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def hsm(token_label: str) -> Iterator[Any]:
    """A provider for one test. PKCS#11 logs a whole process in: a second provider opened while
    this one is logged in would fail, so each test finalises the library (and logs out) at its end."""
    from vault.keys_pkcs11 import Pkcs11KeyProvider

    provider = Pkcs11KeyProvider(MODULE, token_label, PIN)
    provider.create_kek(SYSTEM_TENANT, 1)  # for the software keys of before the switch
    try:
        yield provider
    finally:
        _finalise_library()


@pytest.fixture
def signing(hsm: Any) -> SigningKeyService:
    return SigningKeyService(hsm, store=hsm)


def tokens(signing: SigningKeyService) -> TokenService:
    return TokenService(signing, OAuthConfig(issuer="https://kluis.test", base_url="https://kluis.test"))


def private_object(hsm: Any, row: SigningKey) -> Any:
    from pkcs11 import KeyType, ObjectClass

    label = store_label(row)
    assert label is not None
    key_type = KeyType.EC if row.alg == "ES256" else KeyType.EC_EDWARDS
    return hsm._session.get_key(label=label, key_type=key_type, object_class=ObjectClass.PRIVATE_KEY)


def published(keys: dict[str, Any]) -> jwk.JWKSet:
    return jwk.JWKSet.from_json(json.dumps(keys))


def test_signing_keys_are_made_in_the_hsm_and_never_leave_it(
    hsm: Any, signing: SigningKeyService, db: Database
) -> None:
    from pkcs11 import Attribute
    from pkcs11.exceptions import AttributeSensitive

    with db.session() as s:
        rows = [signing.create(s, "token", NOW), signing.create(s, "checkpoint", NOW)]
        s.commit()
    for row, kty, crv in ((rows[0], "EC", "P-256"), (rows[1], "OKP", "Ed25519")):
        # The database holds the public key and a reference; no private key material, wrapped or not.
        assert row.wrapped_private == STORE_REFERENCE + f"kluis:signing:{row.kid}".encode()
        assert row.kek_version == 0
        public = json.loads(row.public_jwk)
        assert (public["kty"], public["crv"], public["kid"], public["alg"]) == (kty, crv, row.kid, row.alg)
        assert "d" not in public
        key = private_object(hsm, row)
        assert key[Attribute.EXTRACTABLE] is False and key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.SENSITIVE] is True and key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.TOKEN] is True and key[Attribute.PRIVATE] is True
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]
        with pytest.raises(KeyProviderError, match="never leaves"):
            signing.private_key(row)


def test_a_token_signed_in_the_hsm_verifies_with_the_published_jwks(
    signing: SigningKeyService, db: Database
) -> None:
    service = tokens(signing)
    with db.session() as s:
        row = signing.create(s, "token", NOW)
        token = service.issue_user_token(s, role="resident", tenant_id="t1", subject="r1", now=NOW)
        s.commit()
        jwks = service.public_jwks(s, NOW)
        verified = service.verify_user_token(s, token, "resident", NOW)  # the server's own verifier
    header = json.loads(_segment(token, 0))
    assert header == {"alg": "ES256", "kid": row.kid, "typ": "kluis-user+jwt"}
    assert len(_raw_signature(token)) == 64  # r ‖ s, as JWS wants it
    # Signed at NOW, a fixed moment: jwcrypto checks the signature only, the server's verifier the times.
    checked = jwt.JWT(jwt=token, key=published(jwks), algs=["ES256"], check_claims=False)
    claims = json.loads(checked.claims)
    assert (claims["sub"], claims["tenant"], claims["role"]) == ("r1", "t1", "resident")
    assert (verified.subject, verified.tenant_id) == ("r1", "t1")


def test_a_checkpoint_signed_in_the_hsm_verifies(signing: SigningKeyService, db: Database) -> None:
    tenant = secrets.token_hex(16)
    with db.session() as s:
        audit_log.ensure_log(s, tenant, "kluis/gemeente-hsm")
        audit_log.append(
            s,
            AuditEvent(
                tenant=tenant,
                name=tags.LOG_SEARCHED,
                actor=Actor(type="operator", id="cli:test"),
                trace=TraceContext.new(),
                start_time=NOW,
                end_time=NOW,
            ),
        )
        signer = signer_from(signing, s, NOW)  # creates (and commits) the checkpoint key, in the HSM
        checkpoint = audit_log.sign_checkpoint(s, tenant, signer, NOW)
        s.commit()
        row = signing.active(s, "checkpoint")
        assert row is not None and store_label(row) is not None and signer.kid == row.kid
        verified = CheckpointVerifier(signing.public_jwks(s, "checkpoint")).verify(checkpoint.jws)
    assert verified.kid == row.kid and verified.payload.tree_size == 1
    assert verified.payload.root_hash == checkpoint.root_hash


def test_rotation_moves_from_software_keys_to_hsm_keys_and_old_signatures_stay_checkable(
    hsm: Any, db: Database
) -> None:
    before = SigningKeyService(hsm)  # the setting off: software keys wrapped by the HSM's system KEK
    after = SigningKeyService(hsm, store=hsm)
    later = NOW + timedelta(minutes=1)
    with db.session() as s:
        old = before.create(s, "token", NOW)
        old_checkpoint_key = before.create(s, "checkpoint", NOW)
        old_token = tokens(before).issue_user_token(s, role="resident", tenant_id="t", subject="a", now=NOW)
        old_signature = after.sign_jws(old_checkpoint_key, _checkpoint_header(old_checkpoint_key), b"{}")
        assert store_label(old) is None  # and the new service still signs with it until rotation
        new = after.create(s, "token", later)  # rotation: the new key lives in the HSM
        new_checkpoint_key = after.create(s, "checkpoint", later)
        new_token = tokens(after).issue_user_token(s, role="resident", tenant_id="t", subject="b", now=later)
        s.commit()
        s.refresh(old)
        assert old.retired_at is not None and store_label(new) is not None
        service = tokens(after)
        assert service.verify_user_token(s, old_token, "resident", later).subject == "a"  # overlap
        assert service.verify_user_token(s, new_token, "resident", later).subject == "b"
        kids = {k["kid"] for k in service.public_jwks(s, later)["keys"]}
        checkpoint_keys = published(after.public_jwks(s, "checkpoint"))
    assert kids == {old.kid, new.kid}
    assert json.loads(_segment(new_token, 0))["kid"] == new.kid
    new_signature = after.sign_jws(new_checkpoint_key, _checkpoint_header(new_checkpoint_key), b"{}")
    for signature, row in ((old_signature, old_checkpoint_key), (new_signature, new_checkpoint_key)):
        checked = jws.JWS()
        checked.deserialize(signature, key=checkpoint_keys.get_key(row.kid), alg="EdDSA")
        assert checked.payload == b"{}"


def test_a_key_in_the_hsm_cannot_sign_without_the_store(
    hsm: Any, signing: SigningKeyService, db: Database
) -> None:
    with db.session() as s:
        row = signing.create(s, "token", NOW)
        s.commit()
    with pytest.raises(KeyProviderError, match="KLUIS_PKCS11_SIGNING_KEYS"):
        SigningKeyService(hsm).sign_jws(row, json.dumps({"alg": "ES256", "kid": row.kid}), b"{}")
    with pytest.raises(ValueError, match="alg and kid"):
        signing.sign_jws(row, json.dumps({"alg": "EdDSA", "kid": row.kid}), b"{}")


def test_the_setting_puts_the_deployment_s_signing_keys_in_the_hsm(token_label: str, tmp_path: Path) -> None:
    settings = Settings(
        env="development",
        data_dir=tmp_path,
        key_provider="pkcs11",
        pkcs11_module=MODULE,
        pkcs11_token_label=token_label,
        pkcs11_pin=PIN,
        pkcs11_signing_keys=True,
    )
    services = build_services(settings)
    try:
        initialise(services)
        with services.db.session() as s:
            for purpose in ("token", "checkpoint"):
                row = services.signing.active(s, purpose)
                assert row is not None and store_label(row) is not None, purpose
            tenant = services.vault.create_tenant(s, _operator(), "gemeente-hsm", "HSM")
            token = services.oauth.issue_user_token(
                s, _operator(), role="privacy_officer", tenant_id=tenant.id, subject="officer"
            )
        with services.db.read_session() as s:
            now = utcnow()
            assert (
                services.oauth.tokens.verify_user_token(s, token, "privacy_officer", now).subject == "officer"
            )
        checkpoint, new = sign_checkpoint_audited(services, tenant.id, utcnow(), trigger="request")
        with services.db.read_session() as s:
            verifier = CheckpointVerifier(services.signing.public_jwks(s, "checkpoint"))
        assert new and verifier.verify(checkpoint.jws).payload.tree_size == checkpoint.tree_size
    finally:
        services.close()
        _finalise_library()
    with pytest.raises(KeyProviderError, match="KLUIS_KEY_PROVIDER=pkcs11"):
        build_services(Settings(env="development", data_dir=tmp_path / "file", pkcs11_signing_keys=True))
    off = build_services(settings.model_copy(update={"pkcs11_signing_keys": False}))
    try:
        assert off.signing.store is None  # the default: software keys, wrapped by the system KEK
    finally:
        off.close()
        _finalise_library()


def _operator() -> Any:
    from vault.services import Context

    return Context(actor=Actor(type="operator", id="cli:test"), trace=TraceContext.new(), now=utcnow())


def _checkpoint_header(row: SigningKey) -> str:
    return json.dumps({"alg": "EdDSA", "kid": row.kid, "typ": "kluis-checkpoint+jws"}, separators=(",", ":"))


def _segment(token: str, index: int) -> bytes:
    import base64

    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _raw_signature(token: str) -> bytes:
    return _segment(token, 2)
