"""The stand-in keeps to the specification where the connector tests rely on it.

Raw httpx, no connector: if these pass, a connector test that passes against the stand-in says
something about the real BRP API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.brp_standin import StandinServer

HEADERS = {"X-API-KEY": "test-key"}


@pytest.fixture
def api(standin: StandinServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.brp_url, headers=HEADERS) as client:
        yield client


def query(fields: list[str], *bsns: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "RaadpleegMetBurgerservicenummer",
        "burgerservicenummer": list(bsns or ["999970616"]),
        "fields": fields,
    } | extra


def test_fields_select_paths_and_tables_and_dates_come_whole(api: httpx.Client) -> None:
    answer = api.post("/personen", json=query(["naam.geslachtsnaam", "geslacht.code", "geboorte.datum.jaar"]))

    assert answer.status_code == 200
    assert answer.json() == {
        "type": "RaadpleegMetBurgerservicenummer",
        "personen": [
            {
                "naam": {"geslachtsnaam": "Kootwijk"},
                "geslacht": {"code": "V", "omschrijving": "vrouw"},
                "geboorte": {
                    "datum": {"type": "Datum", "datum": "1990-02-16", "langFormaat": "16 februari 1990"}
                },
            }
        ],
    }


def test_a_field_without_value_is_left_out_and_automatic_fields_come_anyway(api: httpx.Client) -> None:
    # 100600220 has no noble title, and geheimhouding, which is always delivered.
    [persoon] = api.post("/personen", json=query(["naam.adellijkeTitelPredicaat"], "100600220")).json()[
        "personen"
    ]

    assert persoon == {"geheimhoudingPersoonsgegevens": True}


def test_an_unknown_bsn_is_an_empty_list_not_a_404(api: httpx.Client, unknown_bsn: str) -> None:
    answer = api.post("/personen", json=query(["burgerservicenummer"], unknown_bsn))

    assert (answer.status_code, answer.json()["personen"]) == (200, [])


@pytest.mark.parametrize(
    ("body", "name", "code"),
    [
        (query(["burgerservicenummer", "bestaatNiet"]), "fields[1]", "fields"),
        (query(["geheimhoudingPersoonsgegevens"]), "fields[0]", "fields"),
        (query(["a*nummer"]), "fields[0]", "pattern"),
        (query([]), "fields", "minItems"),
        (
            {"type": "RaadpleegMetBurgerservicenummer", "burgerservicenummer": ["999970616"]},
            "fields",
            "required",
        ),
        (query(["naam"], *["999970616"] * 21), "burgerservicenummer", "maxItems"),
        (query(["naam"], "99997061"), "burgerservicenummer[0]", "pattern"),
        (query(["naam"], inclusiefOverledenPersonen=True), "inclusiefOverledenPersonen", "unknownParam"),
        (query(["naam"], gemeenteVanInschrijving="Utrecht"), "gemeenteVanInschrijving", "pattern"),
    ],
)
def test_bad_requests_are_problem_documents_naming_the_parameter(
    api: httpx.Client, body: dict[str, Any], name: str, code: str
) -> None:
    answer = api.post("/personen", json=body)

    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert [(p["name"], p["code"]) for p in answer.json()["invalidParams"]] == [(name, code)]


def test_authentication_and_media_type(standin: StandinServer) -> None:
    with httpx.Client(base_url=standin.brp_url) as anonymous:
        refused = anonymous.post("/personen", json=query(["naam"]))
        assert refused.status_code == 401
        assert refused.json()["code"] == "authentication"
        assert "WWW-Authenticate" in refused.headers

        as_form = anonymous.post("/personen", headers=HEADERS, content=b"type=x")
        assert as_form.status_code == 415


def test_persons_come_in_the_shapes_of_the_specification(api: httpx.Client) -> None:
    fields = ["verblijfplaats", "nationaliteiten.type", "gezag"]
    personen = api.post("/personen", json=query(fields, "100600116", "999997002", "999970124")).json()[
        "personen"
    ]

    assert [p["verblijfplaats"]["type"] for p in personen] == ["VerblijfplaatsBuitenland", "Locatie", "Adres"]
    assert {g["type"] for g in personen[2]["gezag"]} == {
        "GezamenlijkOuderlijkGezag",
        "GezamenlijkGezag",
        "EenhoofdigOuderlijkGezag",
    }
    derde = next(g["derde"] for g in personen[2]["gezag"] if g["type"] == "GezamenlijkGezag")
    assert derde["type"] == "BekendeDerde"
