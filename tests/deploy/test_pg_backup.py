"""``kluis backup`` / ``kluis restore`` on PostgreSQL (pg_dump / pg_restore), keys kept apart.

Backup → wipe (the schema dropped and created empty) → restore → ``kluis audit verify`` passes for
every municipality and every record version decrypts to what was written; what changed after the
backup is gone. Restored without the key file (or with someone else's) the same database verifies
but decrypts nothing, and the archive itself holds no key and no plaintext. A broken or foreign
archive is refused and leaves the database as it was.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from kluis.app import sign_pending
from kluis.backup import BackupError, backup_database, restore_database
from kluis.wiring import Services, initialise
from tests.deploy.conftest import (
    INCOME,
    Deployment,
    assert_dense,
    create_database,
    drop_database,
    fresh_database,
    initialised,
    log_entries,
    municipality,
    valid_bsns,
)
from tests.e2e.test_consent_flow import operator
from vault.errors import DecryptionError, KeyProviderError, ResidentNotFoundError
from vault.models import Record, RecordVersion, Resident

pytestmark = pytest.mark.postgres

ISSUER = "http://kluis.example.test"
Plaintexts = dict[tuple[str, str, int], Any]  # (resident id, category, version) -> the record


def every_version(svc: Services) -> list[tuple[Resident, Record, RecordVersion]]:
    with svc.db.read_session() as s:
        rows = s.exec(
            select(Resident, Record, RecordVersion)
            .join(Record, col(Record.resident_id) == col(Resident.id))
            .join(RecordVersion, col(RecordVersion.record_id) == col(Record.id))
        ).all()
        return [(resident, record, version) for resident, record, version in rows]


def decrypt_all(svc: Services) -> Plaintexts:
    """Every version of every record, decrypted (raises at the first that does not open)."""
    return {
        (resident.id, record.category, version.version): svc.vault.decrypt(resident, record, version).data
        for resident, record, version in every_version(svc)
    }


def populate(deployment: Deployment, bsns: list[str]) -> tuple[list[str], Plaintexts, dict[str, int]]:
    """Two municipalities with residents, records (some with two versions) and signed checkpoints.
    Returns the slugs, every record's plaintext, and each log's size."""
    with deployment.services() as svc:
        towns = [municipality(svc, "backup-a", bsns[:3]), municipality(svc, "backup-b", bsns[3:])]
        with svc.db.session() as s:
            for town, bsn in ((towns[0], bsns[0]), (towns[1], bsns[3])):
                resident = svc.vault.resident_by_bsn(s, town.tenant_id, bsn)
                svc.vault.put_record(
                    s, operator(), resident, "inkomen", {**INCOME, "maandinkomen": 1.5}, source="t"
                )
                svc.vault.put_record(s, operator(), resident, "schulden", {"totaal": 50.0}, source="t")
        assert sign_pending(svc) == 2
        plaintexts = decrypt_all(svc)
        sizes = {town.slug: assert_dense(svc, town.tenant_id) for town in towns}
    assert len(plaintexts) == len(bsns) + 4
    return [town.slug for town in towns], plaintexts, sizes


def add_resident(deployment: Deployment, slug: str, bsn: str) -> None:
    with deployment.services() as svc, svc.db.session() as s:
        svc.vault.add_resident(s, operator(), svc.vault.tenant(s, slug), bsn)


def has_resident(svc: Services, slug: str, bsn: str) -> bool:
    with svc.db.read_session() as s:
        try:
            svc.vault.resident_by_bsn(s, svc.vault.tenant(s, slug).id, bsn)
        except ResidentNotFoundError:
            return False
    return True


def restore(deployment: Deployment, source: Path) -> subprocess.CompletedProcess[str]:
    return deployment.cli("restore", "--from", str(source), "--yes")


@dataclass
class BackedUp:
    """A populated deployment and its backup, made once for this module."""

    deployment: Deployment
    dump: Path
    slugs: list[str]
    bsns: list[str]  # the residents' BSNs (all in the backup)
    plaintexts: Plaintexts
    sizes: dict[str, int]  # each log's size at the backup


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackedUp]:
    tmp = tmp_path_factory.mktemp("pg-backup")
    with fresh_database() as url:
        deployment = initialised(tmp / "data", url, ISSUER)
        bsns = valid_bsns(5)
        slugs, plaintexts, sizes = populate(deployment, bsns)
        dump = tmp / "backups" / "kluis.dump"
        made = deployment.cli("backup", "--to", str(dump), "--json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout) == {"backup": str(dump), "bytes": dump.stat().st_size}
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        yield BackedUp(deployment, dump, slugs, bsns, plaintexts, sizes)


def test_backup_wipe_restore_verifies_and_every_record_decrypts(backed_up: BackedUp) -> None:
    deployment, dump, slugs = backed_up.deployment, backed_up.dump, backed_up.slugs
    written = dump.read_bytes()
    again = deployment.cli("backup", "--to", str(dump))
    assert again.returncode == 1 and "exists already" in again.stderr  # never overwrites
    assert dump.read_bytes() == written

    later = valid_bsns(6)[5]
    add_resident(deployment, slugs[0], later)  # after the backup: the restore must undo it
    assert deployment.database_url is not None
    engine = create_engine(deployment.database_url, isolation_level="AUTOCOMMIT")
    try:  # the wipe: every table, row, function and trigger of the schema is gone
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
            assert (
                conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
            )
    finally:
        engine.dispose()

    restored = restore(deployment, dump)
    assert restored.returncode == 0, restored.stderr
    for slug in slugs:
        report = deployment.verify(slug)
        assert report["entries"] == backed_up.sizes[slug]
        assert report["latest_checkpoint"] == backed_up.sizes[slug]
    with deployment.services() as svc:
        assert decrypt_all(svc) == backed_up.plaintexts
        with svc.db.read_session() as s:
            revealed = {svc.vault.reveal_bsn(r) for r in s.exec(select(Resident))}
        assert revealed == set(backed_up.bsns)
        assert not has_resident(svc, slugs[0], later)
    add_resident(deployment, slugs[0], later)  # the restored database takes new writes


def test_a_restore_without_the_key_file_decrypts_nothing(
    backed_up: BackedUp, pg_database: str, tmp_path: Path
) -> None:
    dump, slugs, bsns = backed_up.dump, backed_up.slugs, backed_up.bsns
    # The archive holds no key material and no plaintext: not the KEKs or pseudonym keys, no BSN,
    # no record value (pg_restore turns the archive into plain SQL to look).
    sql = subprocess.run(
        [shutil.which("pg_restore") or "pg_restore", "--file=-", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "audit_entry" in sql and len(sql) > 10_000
    keys = json.loads((backed_up.deployment.data_dir / "keys.json").read_text())
    material = [
        k for entry in keys["tenants"].values() for k in [*entry["kek"].values(), entry.get("pseudonym")] if k
    ]
    assert len(material) >= 5  # the system KEK, and a KEK and pseudonym key per municipality
    leaked = [k for k in material if k in sql] + [b for b in bsns if b in sql]
    assert leaked == []
    assert str(INCOME["werkgever"]) not in sql

    # Restored elsewhere (another database, no key file): the log verifies...
    stolen = Deployment(tmp_path / "elsewhere", pg_database, ISSUER)
    restored = restore(stolen, dump)
    assert restored.returncode == 0, restored.stderr
    assert stolen.verify(slugs[0])["entries"] == backed_up.sizes[slugs[0]]  # the CLI, without keys
    assert not (stolen.data_dir / "keys.json").exists()  # neither needed nor made one
    with stolen.services() as svc:
        # Every log verifies here too (the first one now also records the CLI's verification)...
        entries = {slug: log_entries(svc, slug) for slug in slugs}
        assert entries == {slugs[0]: backed_up.sizes[slugs[0]] + 1, slugs[1]: backed_up.sizes[slugs[1]]}
        # ...but no record, no BSN and no resident look-up opens: without the key file...
        rows = every_version(svc)
        assert len(rows) == len(backed_up.plaintexts)
        for resident, record, version in rows:
            with pytest.raises(KeyProviderError):
                svc.vault.decrypt(resident, record, version)
            with pytest.raises(KeyProviderError):
                svc.vault.reveal_bsn(resident)
        assert not any(has_resident(svc, slugs[0], bsn) for bsn in bsns[:3])
    # ...nor with a key file that has keys by the same names, but not the same keys.
    forged = {"format": 1, "tenants": {t: forge(entry) for t, entry in keys["tenants"].items()}}
    (tmp_path / "forged").mkdir(mode=0o700)
    fd = os.open(tmp_path / "forged" / "keys.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(forged, f)
    with Deployment(tmp_path / "forged", pg_database, ISSUER).services() as svc:
        for resident, record, version in every_version(svc):
            with pytest.raises(DecryptionError):
                svc.vault.decrypt(resident, record, version)
    # The same database with the real key file: everything opens (so the keys made the difference).
    with Deployment(backed_up.deployment.data_dir, pg_database, ISSUER).services() as svc:
        assert decrypt_all(svc) == backed_up.plaintexts


def forge(entry: dict[str, Any]) -> dict[str, Any]:
    """The same key names and versions, other key bytes."""
    fresh = {v: base64.b64encode(os.urandom(32)).decode() for v in entry["kek"]}
    return {**entry, "kek": fresh, "pseudonym": base64.b64encode(os.urandom(32)).decode()}


def test_a_broken_or_foreign_archive_is_refused_and_changes_nothing(pg_database: str, tmp_path: Path) -> None:
    deployment = Deployment(tmp_path / "data", pg_database, ISSUER)
    with deployment.services() as svc:
        initialise(svc)
        municipality(svc, "backup-c", valid_bsns(1))
    dump = tmp_path / "kluis.dump"
    assert backup_database(pg_database, dump) == dump.stat().st_size
    with pytest.raises(BackupError, match="exists already"):
        backup_database(pg_database, dump)
    add_resident(deployment, "backup-c", valid_bsns(2)[1])  # the state a failed restore must keep

    missing = tmp_path / "missing.dump"
    with pytest.raises(BackupError, match="does not exist"):
        restore_database(missing, pg_database)
    not_an_archive = tmp_path / "kluis.db"
    not_an_archive.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises(BackupError, match="not a pg_dump archive"):
        restore_database(not_an_archive, pg_database)
    # An archive of some other database (here: an empty one) is not a Kluis backup.
    other = f"{make_url(pg_database).database}_other"
    create_database(other)
    try:
        foreign = tmp_path / "other.dump"
        backup_database(
            make_url(pg_database).set(database=other).render_as_string(hide_password=False), foreign
        )
    finally:
        drop_database(other)
    with pytest.raises(BackupError, match="not a backup of a Kluis database"):
        restore_database(foreign, pg_database)
    # A truncated archive whose table of contents is intact fails half-way: one transaction, rolled back.
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.read_bytes()[:-500])
    assert (
        subprocess.run(["pg_restore", "--list", str(truncated)], capture_output=True, check=False).returncode
        == 0
    )
    failed = restore(deployment, truncated)
    assert failed.returncode == 1 and "pg_restore failed" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    with deployment.services() as svc:
        assert has_resident(svc, "backup-c", valid_bsns(2)[1])  # still the state before the attempt
    # The intact archive restores over the populated database: the later resident is gone again.
    restore_database(dump, pg_database)
    with deployment.services() as svc:
        assert not has_resident(svc, "backup-c", valid_bsns(2)[1])
        assert has_resident(svc, "backup-c", valid_bsns(1)[0])
        log_entries(svc, "backup-c")
