"""The PKCS#11 key provider against a real SoftHSM2 token that the test initialises itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from kluis.db import Database
from tests.vault.conftest import BSN_A, BSN_B
from vault.errors import DecryptionError, KeyProviderError
from vault.services import Context, VaultService

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
pytestmark = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None and os.environ.get("CI") != "true",
    reason="softhsm2 is not installed (.ci/run installs it; CI never skips)",
)


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from vault.keys_pkcs11 import Pkcs11KeyProvider

    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    # SoftHSM reads its configuration when the library is first initialised in this process.
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "kluis-test",
            "--so-pin",
            "0000",
            "--pin",
            "1234",
        ],
        check=True,
        capture_output=True,
    )
    yield Pkcs11KeyProvider(MODULE, "kluis-test", "1234")


def test_wrap_unwrap_and_one_error_for_everything_that_does_not_open(hsm) -> None:
    hsm.create_kek("tenant-x", 1)
    key = os.urandom(32)
    wrapped = hsm.wrap("tenant-x", 1, key, b"aad")
    assert key not in wrapped and len(wrapped) == 1 + 12 + 32 + 16
    assert hsm.unwrap("tenant-x", 1, wrapped, b"aad") == key
    with pytest.raises(DecryptionError):
        hsm.unwrap("tenant-x", 1, wrapped, b"other aad")
    with pytest.raises(DecryptionError):
        hsm.unwrap("tenant-x", 1, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), b"aad")
    hsm.create_kek("tenant-x", 2)
    with pytest.raises(DecryptionError):
        hsm.unwrap("tenant-x", 2, wrapped, b"aad")
    with pytest.raises(KeyProviderError):
        hsm.unwrap("tenant-x", 9, wrapped, b"aad")


def test_keys_are_not_extractable(hsm) -> None:
    from pkcs11 import Attribute, KeyType, ObjectClass

    hsm.create_kek("tenant-y", 1)
    handle = hsm._session.get_key(
        label="kluis:kek:tenant-y:1", key_type=KeyType.AES, object_class=ObjectClass.SECRET_KEY
    )
    assert handle[Attribute.EXTRACTABLE] is False
    assert handle[Attribute.SENSITIVE] is True


def test_pseudonyms_are_keyed_per_tenant_and_stable(hsm) -> None:
    hsm.create_kek("tenant-p", 1)
    hsm.create_kek("tenant-q", 1)
    a = hsm.pseudonym("tenant-p", b"bsn:999993653")
    assert a == hsm.pseudonym("tenant-p", b"bsn:999993653") and len(a) == 32
    assert a != hsm.pseudonym("tenant-q", b"bsn:999993653")
    assert a != hsm.pseudonym("tenant-p", b"bsn:111222333")


def test_the_vault_on_the_hsm_rotates_and_erases(hsm, db: Database, ctx: Callable[[], Context]) -> None:
    vault = VaultService(hsm)
    with db.session() as s:
        tenant = vault.create_tenant(s, ctx(), "gemeente-hsm", "HSM")
        a = vault.add_resident(s, ctx(), tenant, BSN_A)
        b = vault.add_resident(s, ctx(), tenant, BSN_B)
        vault.put_record(s, ctx(), a, "inkomen", {"maandinkomen": 1.0}, source="x")
        vault.put_record(s, ctx(), b, "inkomen", {"maandinkomen": 2.0}, source="x")
        version = vault.begin_rotation(s, tenant, ctx().now)
        while vault.rewrap_batch(s, tenant.id, version):
            pass
        assert vault.finish_rotation(s, ctx(), tenant, version, destroy_old=True) == [1]
    assert not hsm.has_kek(tenant.id, 1)
    with db.session() as s:
        assert vault.get_record(s, ctx(), vault.resident(s, tenant.id, a.id), "inkomen").data == {
            "maandinkomen": 1.0
        }
        vault.erase_resident(s, ctx(), vault.resident(s, tenant.id, b.id))
        assert vault.resident(s, tenant.id, b.id).wrapped_data_key is None
    assert hsm.check() == []


def test_a_wrong_pin_is_one_clear_error(hsm) -> None:
    from vault.keys_pkcs11 import Pkcs11KeyProvider

    with pytest.raises(KeyProviderError, match="cannot be opened"):
        Pkcs11KeyProvider(MODULE, "kluis-test", "9999")
    with pytest.raises(KeyProviderError):
        Pkcs11KeyProvider(MODULE, "no-such-token", "1234")
