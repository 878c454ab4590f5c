"""``kluis audit checkpoint`` signs through ``sign_checkpoint_audited``, on the services it built once:
a new checkpoint is exactly one ``audit:checkpoint:signed`` entry that the checkpoint covers, it
verifies against the published checkpoint keys, nothing new means nothing signed and nothing written,
a log that cannot be signed is named without holding up the others (SQLite and PostgreSQL); and the
command works with the PKCS#11 provider and the signing keys inside a SoftHSM2 token (one provider
per process: the token is opened once)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import select

from audit import leaf, tags
from audit import services as audit_log
from audit.checkpoints import CheckpointVerifier
from audit.models import CHECKPOINT
from audit.schemas import b64
from kluis.cli import main
from kluis.db import Database
from kluis.wiring import CHECKPOINT_SIGNER, utcnow
from vault.models import SigningKey, Tenant
from vault.signing import store_label

BSN = "999993653"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"


class Cli:
    """The real entry point in this process, as an operator's script calls it."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data_dir: Path, url: str
    ) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.url = url
        monkeypatch.setenv("KLUIS_DATA_DIR", str(data_dir))
        monkeypatch.setenv("KLUIS_ENV", "development")
        monkeypatch.setenv("KLUIS_DATABASE_URL", url)
        monkeypatch.delenv("KLUIS_KEY_PROVIDER", raising=False)
        monkeypatch.delenv("KLUIS_PKCS11_SIGNING_KEYS", raising=False)

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        self.capsys.readouterr()
        self.monkeypatch.setattr("sys.argv", ["kluis", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = self.capsys.readouterr()
        assert (exit_info.value.code or 0) == code, (args, out, err)
        return out, err


@pytest.fixture
def kluis(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    cli = Cli(monkeypatch, capsys, tmp_path / "data", db_url)
    cli("init")
    for slug in ("gemeente-a", "gemeente-b"):
        cli("tenant", "create", slug, "--name", slug.title())
    return cli


@pytest.fixture
def database(kluis: Cli) -> Iterator[Database]:
    built = Database(kluis.url)
    try:
        yield built
    finally:
        built.dispose()


def tenant_id(database: Database, slug: str) -> str:
    with database.read_session() as s:
        return s.exec(select(Tenant.id).where(Tenant.slug == slug)).one()


def names(database: Database, tenant: str) -> list[str]:
    """The event names of the whole log, in order."""
    with database.read_session() as s:
        size = audit_log.log_head(s, tenant).tree_size
        return [leaf.parse(e.leaf_bytes)["name"] for e in audit_log.get_entries(s, tenant, 0, size)]


def size(database: Database, tenant: str) -> int:
    with database.read_session() as s:
        return audit_log.log_head(s, tenant).tree_size


def verified(published: dict[str, Any], document: dict[str, Any]) -> Any:
    """The checkpoint document's JWS, checked by the strict verifier against the published keys."""
    checked = CheckpointVerifier(published).verify(document["jws"])
    assert b64(checked.payload.root_hash) == document["root_hash"]
    assert checked.payload.tree_size == document["tree_size"] and checked.kid == document["kid"]
    return checked


def test_a_checkpoint_from_the_command_line_is_one_audit_entry_that_it_covers(
    kluis: Cli, database: Database
) -> None:
    a = tenant_id(database, "gemeente-a")
    kluis("resident", "add", "--tenant", "gemeente-a", "--bsn", BSN)
    before = size(database, a)  # tenant created, resident added
    out, _ = kluis("audit", "checkpoint", "--tenant", "gemeente-a", "--json")
    signed = json.loads(out)
    # One new entry, the checkpoint's own, and the checkpoint covers it: nothing lies beyond it.
    assert signed["tree_size"] == before + 1 == size(database, a)
    assert names(database, a).count(tags.CHECKPOINT_SIGNED) == 1
    with database.read_session() as s:
        own = leaf.parse(audit_log.get_entries(s, a, before, before + 1)[0].leaf_bytes)
        assert b64(audit_log.root_at(s, a, signed["tree_size"])) == signed["root_hash"]
    assert own["name"] == tags.CHECKPOINT_SIGNED and own["seq"] == before
    assert own["actor"] == {"type": "system", "id": CHECKPOINT_SIGNER.id, "on_behalf_of": None}
    assert own["details"] == {"kid": signed["kid"], "trigger": "command"}
    keys, _ = kluis("audit", "keys", "--json")
    assert verified(json.loads(keys), signed).payload.origin == "kluis/gemeente-a"

    # Nothing new: the same checkpoint back, nothing signed, nothing written.
    again, _ = kluis("audit", "checkpoint", "--tenant", "gemeente-a", "--json")
    assert json.loads(again) == signed
    b = tenant_id(database, "gemeente-b")
    quiet = size(database, b)
    out, _ = kluis("audit", "checkpoint", "--json")  # every log that grew: only gemeente-b
    [other] = json.loads(out)
    assert other["origin"] == "kluis/gemeente-b" and other["tree_size"] == quiet + 1 == size(database, b)
    out, _ = kluis("audit", "checkpoint", "--json")
    assert json.loads(out) == []
    out, _ = kluis("audit", "checkpoint")
    assert out == "no log grew since its last checkpoint\n"
    assert size(database, a) == signed["tree_size"] and size(database, b) == other["tree_size"]
    assert names(database, a).count(tags.CHECKPOINT_SIGNED) == 1
    assert names(database, b).count(tags.CHECKPOINT_SIGNED) == 1
    with database.read_session() as s:
        assert [c.tree_size for c in audit_log.checkpoints(s, a)] == [signed["tree_size"]]

    # The log as a whole, checkpoints included, verifies.
    out, _ = kluis("audit", "verify", "--tenant", "gemeente-a", "--json")
    result = json.loads(out)
    assert result["ok"] and result["checkpoints"] == 1 and result["latest_checkpoint"] == signed["tree_size"]


def test_a_log_that_cannot_be_signed_is_named_and_the_others_are_signed(
    kluis: Cli, database: Database
) -> None:
    a, b = tenant_id(database, "gemeente-a"), tenant_id(database, "gemeente-b")
    # A checkpoint row for gemeente-b with a root its log does not have (a rewritten history).
    with database.session() as s:
        s.execute(
            insert(CHECKPOINT).values(
                tenant_id=b,
                tree_size=size(database, b),
                root_hash=os.urandom(32),
                timestamp_ms=leaf.to_ms(utcnow()),
                kid="forged",
                jws="x.y.z",
            )
        )
        s.commit()
    kluis("resident", "add", "--tenant", "gemeente-b", "--bsn", BSN)
    refused = size(database, b)
    out, err = kluis("audit", "checkpoint", "--json", code=1)
    [signed] = json.loads(out)
    assert signed["origin"] == "kluis/gemeente-a" and signed["tree_size"] == size(database, a)
    assert err.startswith("kluis: error: ") and err.count("\n") == 1 and "kluis/gemeente-b" in err
    assert size(database, b) == refused  # the refused attempt left no entry behind
    _, err = kluis("audit", "checkpoint", "--tenant", "gemeente-b", code=1)
    assert err == "kluis: error: refused to sign a checkpoint inconsistent with the previous one\n"
    assert size(database, b) == refused and tags.CHECKPOINT_SIGNED not in names(database, b)


# -- the PKCS#11 provider, signing keys in a SoftHSM2 token --------------------------------------------
# Each command is its own process, as an operator runs it: PKCS#11 logs a whole process in, so a
# command that opened the token twice (a second key provider for the signer) would fail.


@pytest.fixture
def softhsm(tmp_path: Path) -> dict[str, str]:
    """The environment of a deployment on a fresh SoftHSM2 token (initialised as in
    ``tests/vault/test_signing_pkcs11.py``), signing keys inside it."""
    if shutil.which("softhsm2-util") is None and os.environ.get("CI") != "true":
        pytest.skip("softhsm2 is not installed (.ci/run installs it; CI never skips)")
    home = tmp_path / "softhsm"
    (home / "tokens").mkdir(parents=True)
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLUIS_")}
    env["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "kluis-cli", "--so-pin", "0000", "--pin", PIN],
        check=True,
        capture_output=True,
        env=env,
    )
    return env | {
        "KLUIS_ENV": "development",
        "KLUIS_DATA_DIR": str(tmp_path / "data"),
        "KLUIS_KEY_PROVIDER": "pkcs11",
        "KLUIS_PKCS11_MODULE": SOFTHSM_MODULE,
        "KLUIS_PKCS11_TOKEN_LABEL": "kluis-cli",
        "KLUIS_PKCS11_PIN": PIN,
        "KLUIS_PKCS11_SIGNING_KEYS": "true",
    }


def test_the_command_signs_with_a_checkpoint_key_inside_the_hsm(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    def kluis(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", "from kluis.cli import main; main()", *args],
            env=softhsm,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    kluis("init")
    kluis("tenant", "create", "gemeente-hsm", "--name", "HSM")
    signed = json.loads(kluis("audit", "checkpoint", "--tenant", "gemeente-hsm", "--json"))
    assert kluis("audit", "checkpoint") == "no log grew since its last checkpoint\n"
    verified(json.loads(kluis("audit", "keys", "--json")), signed)
    result = json.loads(kluis("audit", "verify", "--tenant", "gemeente-hsm", "--json"))
    assert result["ok"] and result["latest_checkpoint"] == signed["tree_size"]
    database = Database(f"sqlite:///{tmp_path / 'data' / 'kluis.db'}")
    try:
        tenant = tenant_id(database, "gemeente-hsm")
        with database.read_session() as s:
            key = s.get(SigningKey, signed["kid"])
        assert key is not None and store_label(key) == f"kluis:signing:{signed['kid']}"  # in the token
        # tenant created, its checkpoint's entry (covered), then the verification's entry
        assert names(database, tenant) == [tags.TENANT_CREATED, tags.CHECKPOINT_SIGNED, tags.LOG_VERIFIED]
        assert signed["tree_size"] == 2
    finally:
        database.dispose()
