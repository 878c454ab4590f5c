"""The BRP Personen connector against the stand-in: mapping, fields, gezag and error answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from connectors import (
    BRP_PERSOON,
    BRP_PERSOON_FIELDS,
    BrpPersonenConnector,
    FetchedRecord,
    GezagType,
    InvalidAnswerError,
    InvalidBsnError,
    PersonNotFoundError,
    SourceForbiddenError,
    SourceRequestError,
    UnknownSourceError,
    gezag_relations,
)
from connectors.auth import ApiKeyAuth
from tests.connectors.conftest import FakeTime
from tests.support.brp_standin import StandinServer, field_exists

MakeBrp = Callable[..., BrpPersonenConnector]

#: 999970616 as the category stores her: a known answer, written out by hand from the test data.
KIM_VAN_KOOTWIJK = {
    "naam": {"voornamen": "Kim", "voorvoegsel": "van", "geslachtsnaam": "Kootwijk"},
    "geboorte": {
        "datum": "1990-02-16",
        "plaats": {"code": "0518", "omschrijving": "'s-Gravenhage"},
        "land": {"code": "6030", "omschrijving": "Nederland"},
    },
    "verblijfplaats": {
        "type": "Adres",
        "straat": "Turfmarkt",
        "huisnummer": 65,
        "postcode": "2511CA",
        "woonplaats": "'s-Gravenhage",
    },
    "gemeente_van_inschrijving": {"code": "0518", "omschrijving": "'s-Gravenhage"},
    "nationaliteiten": [
        {"type": "Nationaliteit", "nationaliteit": {"code": "0001", "omschrijving": "Nederlandse"}}
    ],
    "ouders": [
        {
            "ouder_aanduiding": "1",
            "naam": {"voornamen": "Kornelia", "geslachtsnaam": "Kuijken"},
            "geboortedatum": "1960-09-08",
        },
        {
            "ouder_aanduiding": "2",
            "naam": {"voornamen": "Karel", "voorvoegsel": "van", "geslachtsnaam": "Kootwijk"},
            "geboortedatum": "1961-12-09",
        },
    ],
    "kinderen": [
        {
            "bsn": "999970665",
            "naam": {"voornamen": "Karolina", "voorvoegsel": "van", "geslachtsnaam": "Kootwijk"},
            "geboortedatum": "2022-12-05",
        },
        {
            "bsn": "999970641",
            "naam": {"voornamen": "Kyrolina", "voorvoegsel": "van", "geslachtsnaam": "Kootwijk"},
            "geboortedatum": "2021-10-30",
        },
    ],
    "partners": [
        {
            "bsn": "999970628",
            "naam": {"voornamen": "Karla", "geslachtsnaam": "Kruiswijk"},
            "geboortedatum": "1987-03-20",
            "soort_verbintenis": {"code": "H", "omschrijving": "huwelijk"},
            "datum_aangaan": "2018-09-20",
            "datum_ontbinding": "2022-12-20",
        }
    ],
    "gezag": [
        {
            "type": "GezamenlijkOuderlijkGezag",
            "minderjarige_bsn": "999970665",
            "meerderjarigen": [{"rol": "ouder", "bsn": "999970616"}, {"rol": "ouder", "bsn": "999970653"}],
        },
        {
            "type": "GezamenlijkOuderlijkGezag",
            "minderjarige_bsn": "999970641",
            "meerderjarigen": [{"rol": "ouder", "bsn": "999970616"}, {"rol": "ouder", "bsn": "999970653"}],
        },
    ],
}


def test_single_fetch_maps_name_birth_address_nationality_household_and_gezag(
    make_brp: MakeBrp, fake_time: FakeTime
) -> None:
    record = make_brp().fetch("999970616", BRP_PERSOON)

    assert record == FetchedRecord(
        category="brp.persoon", data=KIM_VAN_KOOTWIJK, source="brp", fetched_at=fake_time.wall
    )


def test_the_fields_sent_are_exactly_the_category_fields(make_brp: MakeBrp, standin: StandinServer) -> None:
    make_brp().fetch("999970616")

    [request] = standin.state.recorded("personen")
    assert request.body == {
        "type": "RaadpleegMetBurgerservicenummer",
        "burgerservicenummer": ["999970616"],
        "fields": list(BRP_PERSOON_FIELDS),
    }
    assert request.headers["content-type"].startswith("application/json")
    assert len(set(BRP_PERSOON_FIELDS)) == len(BRP_PERSOON_FIELDS)
    assert all(field_exists(f) for f in BRP_PERSOON_FIELDS)


def test_a_key_authorised_for_just_the_category_fields_is_enough(
    make_brp: MakeBrp, standin: StandinServer
) -> None:
    standin.state.api_keys["minimal"] = frozenset(BRP_PERSOON_FIELDS)
    standin.state.api_keys["narrower"] = frozenset(BRP_PERSOON_FIELDS[:-1])

    assert make_brp(auth=ApiKeyAuth("minimal")).fetch("999970616").data == KIM_VAN_KOOTWIJK
    with pytest.raises(SourceForbiddenError) as refused:
        make_brp(auth=ApiKeyAuth("narrower")).fetch("999970616")
    assert refused.value.status == 403


def test_unknown_credentials_are_refused(make_brp: MakeBrp) -> None:
    with pytest.raises(SourceForbiddenError) as refused:
        make_brp(auth=ApiKeyAuth("not-a-key")).fetch("999970616")

    assert refused.value.status == 401


def test_an_unknown_person_is_not_found_and_the_message_does_not_name_them(
    make_brp: MakeBrp, unknown_bsn: str
) -> None:
    with pytest.raises(PersonNotFoundError) as not_found:
        make_brp().fetch(unknown_bsn)

    assert unknown_bsn not in str(not_found.value)
    assert not_found.value.reason == "person_not_found"


def test_an_invalid_bsn_is_refused_before_anything_is_sent(make_brp: MakeBrp, standin: StandinServer) -> None:
    with pytest.raises(InvalidBsnError):
        make_brp().fetch("999999245")  # the one BSN in the test data that fails the 11-proef

    assert standin.state.recorded("personen") == []


def test_an_answer_violating_the_schema_is_refused_with_a_path_and_no_value(
    make_brp: MakeBrp, standin: StandinServer
) -> None:
    def impossible_birth_date(persoon: dict[str, Any]) -> dict[str, Any]:
        persoon["geboorte"]["datum"] = {
            "type": "Datum",
            "datum": "1990-02-31",
            "langFormaat": "31 februari 1990",
        }
        return persoon

    standin.state.tamper("999970616", impossible_birth_date)

    with pytest.raises(InvalidAnswerError) as invalid:
        make_brp().fetch("999970616")

    assert invalid.value.path == "/geboorte/datum"
    assert "1990-02-31" not in str(invalid.value)
    assert "999970616" not in str(invalid.value)


def test_an_answer_of_the_wrong_shape_is_refused(make_brp: MakeBrp, standin: StandinServer) -> None:
    standin.state.tamper("999970616", lambda p: p | {"kinderen": "Karolina"})

    with pytest.raises(InvalidAnswerError) as invalid:
        make_brp().fetch("999970616")

    assert invalid.value.path == "/kinderen"
    assert "Karolina" not in str(invalid.value)


def test_an_answer_about_someone_else_is_refused(make_brp: MakeBrp, standin: StandinServer) -> None:
    standin.state.tamper("999970616", lambda p: p | {"burgerservicenummer": "999970628"})

    with pytest.raises(InvalidAnswerError, match="not asked for"):
        make_brp().fetch("999970616")


def test_a_rejected_request_names_the_parameter_not_the_value(make_brp: MakeBrp) -> None:
    # A mistake in the gemeente filter: the source answers 400 with invalidParams.
    connector = make_brp(gemeente_van_inschrijving="utrecht")

    with pytest.raises(SourceRequestError) as rejected:
        connector.fetch("999970616")

    assert rejected.value.status == 400
    assert rejected.value.invalid_params == ("gemeenteVanInschrijving",)


def test_gemeente_van_inschrijving_limits_the_answer_to_that_municipality(make_brp: MakeBrp) -> None:
    # 999970616 lives in 's-Gravenhage (0518); Utrecht (0344) does not know her.
    assert make_brp(gemeente_van_inschrijving="0518").fetch("999970616").data == KIM_VAN_KOOTWIJK
    with pytest.raises(PersonNotFoundError):
        make_brp(gemeente_van_inschrijving="0344").fetch("999970616")


def test_another_category_is_not_served(make_brp: MakeBrp) -> None:
    with pytest.raises(UnknownSourceError):
        make_brp().fetch("999970616", "inkomen")


def test_fetch_many_asks_twenty_at_a_time_and_reports_per_person(
    make_brp: MakeBrp, standin: StandinServer, raw_personen: list[dict[str, Any]], unknown_bsn: str
) -> None:
    bsns = [p["burgerservicenummer"] for p in raw_personen[:25] if p["burgerservicenummer"] != "999999245"]
    bsns += [unknown_bsn, "123"]

    outcomes = make_brp().fetch_many(bsns)

    assert [len(r.body["burgerservicenummer"]) for r in standin.state.recorded("personen")] == [
        20,
        len(bsns) - 21,
    ]
    assert isinstance(outcomes[unknown_bsn], PersonNotFoundError)
    assert isinstance(outcomes["123"], InvalidBsnError)
    assert all(isinstance(outcomes[b], FetchedRecord) for b in bsns[:-2])


# -- mapping details, checked against the test data ------------------------------------------------


def test_titles_foreign_addresses_and_partial_dates(make_brp: MakeBrp) -> None:
    connector = make_brp()

    graaf = connector.fetch("000009830").data
    assert graaf["naam"] == {
        "voornamen": "Theodoor-Christiaan R. Philip",
        "voorvoegsel": "van der",
        "geslachtsnaam": "Ven-Van Roedelrode tot Broekzucht",
        "adellijke_titel_predicaat": {"code": "G", "omschrijving": "graaf"},
    }
    assert graaf["verblijfplaats"] == {
        "type": "Adres",
        "straat": "Boulevard 1945",
        "huisnummer": 144,
        "postcode": "7511AG",
    }
    assert graaf["ouders"][0]["naam"] == {
        "voornamen": "Pieternella Marina",
        "voorvoegsel": "van der",
        "geslachtsnaam": "Ven-Van Roedelrode tot Broekzucht",
    }

    abroad = connector.fetch("100600116").data
    assert abroad["verblijfplaats"] == {
        "type": "VerblijfplaatsBuitenland",
        "regel1": "2448 Essex Road 14",
        "regel2": "Wheatley",
        "land": {"code": "5001", "omschrijving": "Canada"},
    }

    assert connector.fetch("999970586").data["geboorte"] == {
        "datum": "1970",
        "plaats": {"omschrijving": "Mogadishu"},
        "land": {"code": "6013", "omschrijving": "Somalië"},
    }
    assert connector.fetch("999970598").data["geboorte"]["datum"] == "1978-06"
    assert connector.fetch("999997002").data["verblijfplaats"]["type"] == "Locatie"


def test_automatically_delivered_fields_are_not_stored(make_brp: MakeBrp) -> None:
    # 100600220 carries geheimhoudingPersoonsgegevens, which the BRP sends whatever fields says.
    record = make_brp().fetch("100600220")

    assert "geheimhoudingPersoonsgegevens" not in record.data
    assert "geheimhouding_persoonsgegevens" not in record.data


# -- gezag: what the portal's representatives rely on ---------------------------------------------


def test_gezag_relations_name_who_holds_authority_over_which_minor(make_brp: MakeBrp) -> None:
    connector = make_brp()

    parent = gezag_relations(connector.fetch("999970124").data)
    assert [(r.type, r.minderjarige_bsn) for r in parent] == [
        (GezagType.GEZAMENLIJK_OUDERLIJK, "999970409"),
        (GezagType.GEZAMENLIJK, "999970161"),
        (GezagType.EENHOOFDIG_OUDERLIJK, "999970185"),
    ]
    assert all(r.grants_authority_to("999970124") for r in parent)
    assert parent[1].meerderjarigen[1].rol == "derde"
    assert parent[1].grants_authority_to("999970136")
    assert not parent[2].grants_authority_to("999970410")

    [voogdij] = gezag_relations(connector.fetch("999970203").data)
    assert voogdij.type is GezagType.VOOGDIJ
    assert voogdij.minderjarige_bsn == "999970215"
    assert voogdij.grants_authority_to("999970203")


def test_the_minor_s_own_record_names_the_parents_with_authority(make_brp: MakeBrp) -> None:
    [relation] = gezag_relations(make_brp().fetch("999970665").data)

    assert relation.minderjarige_bsn == "999970665"
    assert relation.grants_authority_to("999970616")
    assert relation.grants_authority_to("999970653")
    assert not relation.grants_authority_to("999970628")  # the (former) partner has no authority


def test_gezag_that_cannot_be_determined_grants_no_one_authority(make_brp: MakeBrp) -> None:
    [relation] = gezag_relations(make_brp().fetch("900194042").data)

    assert relation.type is GezagType.NIET_TE_BEPALEN
    assert relation.meerderjarigen == ()
    assert relation.toelichting
    assert not relation.type.grants_authority


def test_a_child_comes_of_age_on_the_earliest_day_the_stored_birth_date_allows() -> None:
    from datetime import date

    from connectors import adult_from

    assert adult_from("2008-06-15") == date(2026, 6, 15)
    assert adult_from("2008-06") == date(2026, 6, 1)
    assert adult_from("2008") == date(2026, 1, 1)
    assert adult_from("2008-02-29") == date(2026, 2, 28)  # no 29 February in 2026
    assert adult_from("2004-02-29") == date(2022, 2, 28)
    assert adult_from("2000-02-29") == date(2018, 2, 28)
    assert adult_from("1996-02-29") == date(2014, 2, 28)
    assert adult_from("2012-02-29") == date(2030, 2, 28)
    assert adult_from("2014-02-29") is None  # not a date at all
    assert [adult_from(v) for v in (None, "", "onbekend", "2008-13", "9990-01-01")] == [None] * 5
