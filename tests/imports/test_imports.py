"""Single imports through ``kluis.imports`` against the stand-in BRP over loopback HTTP, on SQLite and
PostgreSQL: the record is stored and decrypts, the ``fields`` sent are the category's, gezag relations
arrive, and every failure stores nothing and leaves one ``vault:record:import_failed`` entry."""

from __future__ import annotations

from typing import Any

import pytest

from audit import tags
from connectors import (
    BRP_PERSOON_FIELDS,
    GezagType,
    InvalidAnswerError,
    PersonNotFoundError,
    SourceForbiddenError,
    SourceUnavailableError,
    gezag_relations,
)
from kluis.imports import import_all, import_one, vault_residents
from kluis.settings import Settings
from kluis.wiring import build_services
from tests.imports.conftest import GEZAG_BSN, SECRET_ENV, TENANT, Kluis, operator
from tests.support.brp_standin import StandinServer
from vault.errors import InvalidBsnError, InvalidRecordError, ResidentNotFoundError
from vault.models import Resident
from vault.schemas import RecordContent
from vault.services import VaultService

BSN = "999970616"


def add_resident(kluis: Kluis, bsn: str) -> Resident:
    with kluis.services.db.session() as s:
        return kluis.services.vault.add_resident(s, operator(), kluis.tenant, bsn)


def stored(kluis: Kluis, bsn: str, category: str = "brp.persoon") -> list[RecordContent]:
    """Every version of the resident's record, decrypted (oldest first; the reads are audited)."""
    vault = kluis.services.vault
    with kluis.services.db.session() as s:
        resident = vault.resident_by_bsn(s, kluis.tenant.id, bsn)
        versions = [v.version for v in vault.history(s, resident, category)]
        return [vault.get_record(s, operator(), resident, category, v) for v in versions]


def raw_person(raw_personen: list[dict[str, Any]], bsn: str) -> dict[str, Any]:
    return next(p for p in raw_personen if p["burgerservicenummer"] == bsn)


def assert_no_bsn_in_audit(kluis: Kluis, *bsns: str) -> None:
    for raw in kluis.audit_bytes():
        for bsn in bsns:
            assert bsn.encode() not in raw


def test_a_single_import_stores_a_record_that_decrypts_and_is_audited_with_its_source(
    kluis: Kluis, standin: StandinServer, raw_personen: list[dict[str, Any]]
) -> None:
    resident = add_resident(kluis, BSN)

    imported = import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)

    assert (imported.resident_id, imported.created) == (resident.id, False)
    assert (imported.summary.category, imported.summary.version, imported.summary.source) == (
        "brp.persoon",
        1,
        "brp",
    )
    [content] = stored(kluis, BSN)
    person = raw_person(raw_personen, BSN)
    assert content.source == "brp"
    assert content.data["naam"]["geslachtsnaam"] == person["naam"]["geslachtsnaam"]
    assert content.data["geboorte"]["datum"] == "{}-{}-{}".format(
        person["geboorte"]["datum"][:4], person["geboorte"]["datum"][4:6], person["geboorte"]["datum"][6:]
    )
    assert "burgerservicenummer" not in content.data  # the vault knows its resident
    # One request, asking exactly the category's fields, authenticated with the key from the environment.
    [request] = standin.state.recorded("personen")
    assert request.body == {
        "type": "RaadpleegMetBurgerservicenummer",
        "burgerservicenummer": [BSN],
        "fields": list(BRP_PERSOON_FIELDS),
    }
    assert request.auth == "api-key"
    [entry] = kluis.audit(tags.RECORD_IMPORTED)
    assert entry["status"] == "ok" and entry["decision"] == "allow"
    assert entry["data_subject_id"] == resident.audit_pseudonym
    assert entry["categories"] == ["brp.persoon"]
    assert entry["details"] == {"version": 1, "source": "brp"}
    assert entry["actor"]["type"] == "operator"
    assert kluis.audit(tags.RECORD_IMPORT_FAILED) == []
    assert_no_bsn_in_audit(kluis, BSN)


def test_a_second_import_is_a_new_version(kluis: Kluis) -> None:
    add_resident(kluis, BSN)
    import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)
    again = import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)

    assert again.summary.version == 2
    first, second = stored(kluis, BSN)
    assert first.data == second.data
    assert [e["details"]["version"] for e in kluis.audit(tags.RECORD_IMPORTED)] == [1, 2]


def test_gezag_relations_arrive_in_the_stored_record(
    kluis: Kluis, raw_personen: list[dict[str, Any]]
) -> None:
    imported = import_one(kluis.services, TENANT, GEZAG_BSN, "brp", operator(), create_resident=True)

    assert imported.created
    [content] = stored(kluis, GEZAG_BSN)
    relations = gezag_relations(content.data)
    expected = raw_person(raw_personen, GEZAG_BSN)["gezag"]
    assert len(relations) == len(expected) == 3
    for relation, raw in zip(relations, expected, strict=True):
        kind = "GezamenlijkOuderlijkGezag" if raw["type"] == "TweehoofdigOuderlijkGezag" else raw["type"]
        assert relation.type == GezagType(kind)
        assert relation.minderjarige_bsn == raw["minderjarige"]["burgerservicenummer"]
        holders = [h["burgerservicenummer"] for h in raw.get("ouders", [])]
        holders += [raw[k]["burgerservicenummer"] for k in ("ouder", "derde") if k in raw]
        assert [h.bsn for h in relation.meerderjarigen] == holders
        assert relation.grants_authority_to(GEZAG_BSN)


def test_without_create_a_resident_not_in_the_vault_is_refused_before_anything_is_sent(
    kluis: Kluis, standin: StandinServer
) -> None:
    with pytest.raises(ResidentNotFoundError):
        import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)
    with pytest.raises(InvalidBsnError):
        import_one(kluis.services, TENANT, "123456789", "brp", operator(), create_resident=True)

    assert standin.state.recorded("personen") == []
    assert kluis.audit(tags.RECORD_IMPORTED) == kluis.audit(tags.RECORD_IMPORT_FAILED) == []


def test_create_adds_a_resident_only_once_the_source_delivered(
    kluis: Kluis, standin: StandinServer, unknown_bsn: str
) -> None:
    with pytest.raises(PersonNotFoundError):
        import_one(kluis.services, TENANT, unknown_bsn, "brp", operator(), create_resident=True)

    with kluis.services.db.read_session() as s, pytest.raises(ResidentNotFoundError):
        kluis.services.vault.resident_by_bsn(s, kluis.tenant.id, unknown_bsn)
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["status"], failed["reason"], failed["categories"]) == (
        "error",
        "person_not_found",
        ["brp.persoon"],
    )
    assert failed["data_subject_id"] is None  # not a resident: no pseudonym to name
    assert failed["details"] == {"source": "brp"}
    assert kluis.audit(tags.RESIDENT_ADDED) == []
    assert_no_bsn_in_audit(kluis, unknown_bsn)


def test_an_unavailable_source_stores_nothing_and_is_audited_as_failed(
    kluis: Kluis, standin: StandinServer
) -> None:
    resident = add_resident(kluis, BSN)
    import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)
    standin.state.inject("personen", 503, times=10, retry_after="0")

    with pytest.raises(SourceUnavailableError):
        import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)

    assert len(stored(kluis, BSN)) == 1  # still the first version only
    assert len(standin.state.recorded("personen")) == 1 + 2  # the import, then two attempts
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["status"], failed["reason"]) == ("error", "source_unavailable")
    assert failed["data_subject_id"] == resident.audit_pseudonym
    assert failed["categories"] == ["brp.persoon"]
    assert failed["details"] == {"source": "brp", "cause": "http_503", "attempts": 2}
    assert len(kluis.audit(tags.RECORD_IMPORTED)) == 1
    assert_no_bsn_in_audit(kluis, BSN)


def test_an_invalid_answer_stores_nothing_and_is_audited_as_failed(
    kluis: Kluis, standin: StandinServer
) -> None:
    resident = add_resident(kluis, BSN)
    # A date the calendar does not have: fails the category schema's ``format: date``.
    standin.state.tamper(BSN, lambda p: p | {"geboorte": {"datum": {"type": "Datum", "datum": "2001-02-30"}}})

    with pytest.raises(InvalidAnswerError):
        import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)

    with kluis.services.db.read_session() as s:
        assert kluis.services.vault.summaries(s, resident) == []
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["data_subject_id"]) == ("invalid_answer", resident.audit_pseudonym)
    assert failed["details"]["path"] == "/geboorte/datum"
    assert failed["details"]["keyword"] in {"format", "anyOf", "oneOf", "pattern"}
    assert "2001" not in str(failed)  # the offending value is never audited
    assert kluis.audit(tags.RECORD_IMPORTED) == []


def test_refused_credentials_are_audited_and_name_no_secret(
    kluis: Kluis, standin: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_resident(kluis, BSN)
    monkeypatch.setenv(SECRET_ENV, "a-revoked-key")
    services = build_services(Settings())  # the environment is read once, into the settings
    try:
        with pytest.raises(SourceForbiddenError) as raised:
            import_one(services, TENANT, BSN, "brp", operator(), create_resident=False)
    finally:
        services.close()

    assert "a-revoked-key" not in str(raised.value)
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["details"]) == (
        "source_forbidden",
        {"source": "brp", "http_status": 401},
    )
    assert "a-revoked-key" not in str(kluis.audit())


def test_a_record_the_vault_refuses_is_a_failed_import(kluis: Kluis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector validated against the same schema, so this is the vault's last word (e.g. size)."""
    resident = add_resident(kluis, BSN)

    def too_large(*_args: Any, **_kwargs: Any) -> Any:
        raise InvalidRecordError("the record is too large")

    monkeypatch.setattr(VaultService, "put_record", too_large)

    with pytest.raises(InvalidAnswerError):
        import_one(kluis.services, TENANT, BSN, "brp", operator(), create_resident=False)

    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["data_subject_id"]) == ("invalid_answer", resident.audit_pseudonym)
    assert failed["details"] == {"source": "brp", "problem": "refused by the vault"}
    monkeypatch.undo()
    with kluis.services.db.read_session() as s:
        assert kluis.services.vault.summaries(s, resident) == []


def test_a_resident_erased_during_a_bulk_run_is_reported_and_the_run_goes_on(
    kluis: Kluis, raw_personen: list[dict[str, Any]]
) -> None:
    bsns = [p["burgerservicenummer"] for p in raw_personen[:3]]
    for bsn in bsns:
        add_resident(kluis, bsn)
    items = vault_residents(kluis.services, TENANT)  # read before the erasure, as a long run would
    with kluis.services.db.session() as s:
        erased = kluis.services.vault.resident_by_bsn(s, kluis.tenant.id, bsns[1])
        kluis.services.vault.erase_resident(s, operator(), erased)

    state = import_all(kluis.services, TENANT, "brp", operator(), items)

    assert (state.imported, state.failed, state.completed) == (2, {"resident_erased": [1]}, True)
    [failed] = kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["data_subject_id"]) == ("resident_erased", erased.audit_pseudonym)
