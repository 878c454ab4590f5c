"""The vault's storage on SQLite and PostgreSQL: residents, records, isolation, integrity, erasure,
rotation."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kluis.db import Database
from tests.conftest import Clock
from tests.vault.conftest import BSN_A, BSN_B
from vault.errors import (
    CategoryNotFoundError,
    DecryptionError,
    DuplicateResidentError,
    DuplicateTenantError,
    InvalidBsnError,
    InvalidRecordError,
    KeyProviderError,
    ResidentErasedError,
    ResidentNotFoundError,
    TenantNotFoundError,
)
from vault.keys import FileKeyProvider
from vault.models import Record, RecordVersion, Resident, Tenant
from vault.services import VaultService

INCOME = {"maandinkomen": 2100.0, "werkgever": "Smoke BV"}


def count(db: Database, table: str) -> int:
    with db.read_session() as session:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_put_and_get_a_record_with_versions(
    db: Database, vault: VaultService, tenant: Tenant, ctx, clock: Clock
):
    with db.session() as s:
        resident = vault.add_resident(s, ctx(), tenant, BSN_A)
        assert len(resident.id) == 32 and resident.id != BSN_A
        first = vault.put_record(s, ctx(), resident, "inkomen", INCOME, source="operator")
        clock.advance(minutes=5)
        second = vault.put_record(s, ctx(), resident, "inkomen", {"maandinkomen": 2300.0}, source="uwv")
    assert (first.version, second.version) == (1, 2)
    with db.session() as s:
        resident = vault.resident_by_bsn(s, tenant.id, BSN_A)
        current = vault.get_record(s, ctx(), resident, "inkomen")
        old = vault.get_record(s, ctx(), resident, "inkomen", version=1)
        history = vault.history(s, resident, "inkomen")
    assert current.data == {"maandinkomen": 2300.0} and current.source == "uwv" and current.version == 2
    assert old.data == INCOME
    assert [h.version for h in history] == [1, 2]
    assert history[1].updated_at == clock.now


@pytest.mark.parametrize(
    ("bsn", "category", "data", "error"),
    [
        ("999993654", "inkomen", INCOME, InvalidBsnError),
        (BSN_A, "bestaat.niet", INCOME, CategoryNotFoundError),
        (BSN_A, "inkomen", {"maandinkomen": "veel"}, InvalidRecordError),
        (BSN_A, "inkomen", {"maandinkomen": 1, "extra": True}, InvalidRecordError),
        (BSN_A, "inkomen", ["not", "an", "object"], InvalidRecordError),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(db, vault, tenant, ctx, bsn, category, data, error):
    with db.session() as s:
        resident = vault.add_resident(s, ctx(), tenant, BSN_A)
    before = (count(db, "record"), count(db, "record_version"), count(db, "audit_entry"))
    with db.session() as s, pytest.raises(error):
        target = resident if bsn == BSN_A else vault.resident_by_bsn(s, tenant.id, bsn)
        vault.put_record(s, ctx(), target, category, data, source="operator")
    assert (count(db, "record"), count(db, "record_version"), count(db, "audit_entry")) == before


def test_invalid_and_duplicate_residents_are_refused(db, vault, tenant, ctx):
    with db.session() as s:
        vault.add_resident(s, ctx(), tenant, BSN_A)
    before = count(db, "resident")
    with db.session() as s, pytest.raises(InvalidBsnError):
        vault.add_resident(s, ctx(), tenant, "123456789")
    with db.session() as s, pytest.raises(DuplicateResidentError):
        vault.add_resident(s, ctx(), tenant, BSN_A)
    with db.session() as s, pytest.raises(DuplicateTenantError):
        vault.create_tenant(s, ctx(), "gemeente-a", "Again")
    with db.session() as s, pytest.raises(TenantNotFoundError):
        vault.tenant(s, "gemeente-x")
    assert count(db, "resident") == before


def test_two_tenants_with_the_same_bsn_stay_separate(db, vault, tenant, ctx):
    with db.session() as s:
        other = vault.create_tenant(s, ctx(), "gemeente-b", "Gemeente B")
        in_a = vault.add_resident(s, ctx(), tenant, BSN_A)
        in_b = vault.add_resident(s, ctx(), other, BSN_A)
        vault.put_record(s, ctx(), in_a, "inkomen", {"maandinkomen": 1.0}, source="a")
        vault.put_record(s, ctx(), in_b, "inkomen", {"maandinkomen": 2.0}, source="b")
    assert in_a.id != in_b.id and in_a.bsn_pseudonym != in_b.bsn_pseudonym
    assert in_a.audit_pseudonym != in_b.audit_pseudonym
    with db.session() as s:
        assert vault.get_record(s, ctx(), vault.resident_by_bsn(s, tenant.id, BSN_A), "inkomen").data == {
            "maandinkomen": 1.0
        }
        assert vault.get_record(s, ctx(), vault.resident_by_bsn(s, other.id, BSN_A), "inkomen").data == {
            "maandinkomen": 2.0
        }
        with pytest.raises(ResidentNotFoundError):
            vault.resident(s, other.id, in_a.id)  # a resident id of A is unknown in B


def _ciphertext(db: Database, resident_id: str, category: str) -> tuple[str, bytes]:
    with db.read_session() as s:
        rec = s.execute(
            text("SELECT id FROM record WHERE resident_id = :r AND category = :c"),
            {"r": resident_id, "c": category},
        ).scalar_one()
        ct = s.execute(
            text("SELECT ciphertext FROM record_version WHERE record_id = :r"), {"r": rec}
        ).scalar_one()
    return rec, bytes(ct)


def _overwrite(db: Database, record_id: str, ciphertext: bytes) -> None:
    with db.session() as s:
        s.execute(
            text("UPDATE record_version SET ciphertext = :c WHERE record_id = :r"),
            {"c": ciphertext, "r": record_id},
        )
        s.commit()


def test_ciphertext_moved_to_another_row_or_corrupted_fails_with_one_error(db, vault, tenant, ctx):
    with db.session() as s:
        a = vault.add_resident(s, ctx(), tenant, BSN_A)
        b = vault.add_resident(s, ctx(), tenant, BSN_B)
        vault.put_record(s, ctx(), a, "inkomen", {"maandinkomen": 1.0}, source="x")
        vault.put_record(s, ctx(), a, "schulden", {"totaal": 10.0}, source="x")
        vault.put_record(s, ctx(), b, "inkomen", {"maandinkomen": 2.0}, source="x")
    a_income, a_ct = _ciphertext(db, a.id, "inkomen")
    a_debts, _ = _ciphertext(db, a.id, "schulden")
    b_income, _ = _ciphertext(db, b.id, "inkomen")
    _overwrite(db, b_income, a_ct)  # another resident's row
    _overwrite(db, a_debts, a_ct)  # another category's row
    with db.session() as s:
        with pytest.raises(DecryptionError, match="cannot be decrypted"):
            vault.get_record(s, ctx(), vault.resident(s, tenant.id, b.id), "inkomen")
        with pytest.raises(DecryptionError, match="cannot be decrypted"):
            vault.get_record(s, ctx(), vault.resident(s, tenant.id, a.id), "schulden")
    corrupted = bytearray(a_ct)
    corrupted[len(corrupted) // 2] ^= 0x40
    _overwrite(db, a_income, bytes(corrupted))
    with db.session() as s, pytest.raises(DecryptionError, match="cannot be decrypted"):
        vault.get_record(s, ctx(), vault.resident(s, tenant.id, a.id), "inkomen")


def test_erasure_destroys_the_data_key_even_with_the_kek(db, vault, keys, tenant, ctx):
    with db.session() as s:
        resident = vault.add_resident(s, ctx(), tenant, BSN_A)
        vault.put_record(s, ctx(), resident, "inkomen", INCOME, source="x")
    with db.read_session() as s:
        snapshot = s.get(Resident, resident.id)
        assert snapshot is not None
        record = s.execute(text("SELECT id FROM record")).scalar_one()
        version = s.get(RecordVersion, (record, 1))
        rec = s.get(Record, record)
        assert version is not None and rec is not None
    with db.session() as s:
        vault.erase_resident(s, ctx(), vault.resident(s, tenant.id, resident.id))
    with db.session() as s:
        erased = vault.resident(s, tenant.id, resident.id)
        assert (
            erased.erased_at is not None and erased.wrapped_data_key is None and erased.bsn_ciphertext is None
        )
        with pytest.raises(ResidentNotFoundError):
            vault.resident_by_bsn(s, tenant.id, BSN_A)
        with pytest.raises(ResidentErasedError):
            vault.decrypt(erased, rec, version)  # the old ciphertext, the KEK still there: no key
        with pytest.raises(ResidentErasedError):
            vault.erase_resident(s, ctx(), erased)
    assert keys.has_kek(tenant.id, 1)
    assert count(db, "record_version") == 0 and count(db, "record") == 0
    # A data key kept from before erasure is the only way back; the database no longer holds one.
    assert snapshot.wrapped_data_key is not None


def test_rotation_rewraps_every_data_key_and_the_old_kek_is_not_needed(db, vault, keys, tenant, ctx):
    with db.session() as s:
        residents = [vault.add_resident(s, ctx(), tenant, bsn) for bsn in (BSN_A, BSN_B, "123456782")]
        for r in residents:
            vault.put_record(s, ctx(), r, "inkomen", {"maandinkomen": 5.0}, source="x")
    before = {r.id: _ciphertext(db, r.id, "inkomen")[1] for r in residents}
    with db.session() as s:
        t = vault.tenant(s, "gemeente-a")
        version = vault.begin_rotation(s, t, ctx().now)
        rewrapped = 0
        while n := vault.rewrap_batch(s, t.id, version, limit=2):
            rewrapped += n
        retired = vault.finish_rotation(s, ctx(), t, version, destroy_old=True)
    assert (version, rewrapped, retired) == (2, 3, [1])
    assert not keys.has_kek(tenant.id, 1)
    assert {r.id: _ciphertext(db, r.id, "inkomen")[1] for r in residents} == before  # records untouched
    fresh = VaultService(FileKeyProvider(keys.path))  # a new process: nothing cached
    with db.session() as s:
        for r in residents:
            assert fresh.get_record(s, ctx(), fresh.resident(s, tenant.id, r.id), "inkomen").data == {
                "maandinkomen": 5.0
            }
        newcomer = fresh.add_resident(s, ctx(), fresh.tenant(s, "gemeente-a"), "111111110")
        assert newcomer.kek_version == 2


def test_a_destroyed_kek_makes_data_keys_unreadable(db, vault, keys, tenant, ctx):
    with db.session() as s:
        resident = vault.add_resident(s, ctx(), tenant, BSN_A)
        vault.put_record(s, ctx(), resident, "inkomen", INCOME, source="x")
    keys.destroy_kek(tenant.id, 1)
    with db.session() as s, pytest.raises(KeyProviderError):
        vault.get_record(s, ctx(), vault.resident(s, tenant.id, resident.id), "inkomen")


def test_no_bsn_or_content_in_clear_in_the_sqlite_files(tmp_path, keys, ctx):
    data_dir = tmp_path / "data"
    db = Database(f"sqlite:///{data_dir / 'kluis.db'}")
    db.migrate()
    vault = VaultService(FileKeyProvider(data_dir / "keys.json"))
    marker = "MARKER-7f3a9c-Zwanenburg"
    with db.session() as s:
        t = vault.create_tenant(s, ctx(), "gemeente-a", "Gemeente A")
        r = vault.add_resident(s, ctx(), t, BSN_A)
        vault.put_record(s, ctx(), r, "inkomen", {"maandinkomen": 1.0, "werkgever": marker}, source="x")
        vault.get_record(s, ctx(), r, "inkomen")
    db.dispose()
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "kluis.db" for p in files)
    for path in files:
        raw = path.read_bytes()
        for needle in (marker.encode(), BSN_A.encode(), marker.encode("utf-16-le")):
            assert needle not in raw, f"{needle!r} found in {path.name}"


def test_schema_matches_the_models(db: Database) -> None:
    """The tables Alembic made are the tables the models describe (no drift)."""
    import importlib

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    # Every module that declares tables; a table missing here shows up below as "remove_table".
    for module in (
        "audit.models",
        "vault.models",
        "consent.models",
        "kluis.web.models",
        "kluis.console.models",
    ):
        importlib.import_module(module)

    with db.write_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    relevant = [d for d in diff if not (isinstance(d, tuple) and d[0] in {"remove_index", "add_index"})]
    assert relevant == []


def test_a_stale_resident_object_cannot_write_after_erasure(db, vault, tenant, ctx):
    with db.session() as s:
        stale = vault.add_resident(s, ctx(), tenant, BSN_A)
    with db.session() as s:
        vault.erase_resident(s, ctx(), vault.resident(s, tenant.id, stale.id))
    assert stale.erased_at is None  # the caller's copy still looks alive
    with db.session() as s, pytest.raises(ResidentErasedError):
        vault.put_record(s, ctx(), stale, "inkomen", INCOME, source="x")
    assert count(db, "record") == 0


def test_a_dedicated_connection_is_the_callers_own_with_the_engines_settings(db: Database) -> None:
    connection = db.dedicated_connection(write=True)
    try:
        cursor = connection.cursor()
        if db.is_sqlite:  # opened through the engine: the same pragmas as every pooled connection
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
            cursor.execute("PRAGMA foreign_keys")
            assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT count(*) FROM tenant")
        assert cursor.fetchone()[0] == 0
        cursor.close()
        # Out of the pool for good: the pool never hands it to anyone else.
        for _ in range(3):
            with db.write_engine.connect() as pooled:
                assert pooled.connection.driver_connection is not connection
    finally:
        connection.close()
    assert count(db, "tenant") == 0  # the pool still serves
