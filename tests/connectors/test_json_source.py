"""The generic JSON source: URL template or body template, JSON pointer mapping, schema validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from connectors import (
    ConnectorConfigError,
    FetchedRecord,
    InvalidAnswerError,
    InvalidBsnError,
    JsonSourceConnector,
    PersonNotFoundError,
    SourceClient,
    UnknownSourceError,
)
from connectors.pointer import MISSING, assign, resolve
from tests.connectors.conftest import FakeTime
from tests.support.brp_standin import StandinServer, cases_of, income_of

INKOMEN_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Inkomen",
    "description": "Inkomensregels van een jaar (test category).",
    "type": "object",
    "additionalProperties": False,
    "required": ["jaar", "regels"],
    "properties": {
        "jaar": {"type": "integer", "minimum": 2000},
        "bron": {"type": "string"},
        "regels": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["soort", "bedrag"],
                "properties": {
                    "soort": {"enum": ["loon", "toeslag", "uitkering"]},
                    "bedrag": {"type": "integer"},
                },
            },
        },
    },
}
ZAKEN_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["zaken"],
    "properties": {"zaken": {"type": "array"}, "aantal": {"type": "integer"}},
}
INKOMEN_MAPPING = {"/jaar": "/resultaat/jaar", "/regels": "/resultaat/regels", "/bron": "/meta/bron"}

MakeJson = Callable[..., JsonSourceConnector]


@pytest.fixture
def make_json(
    standin: StandinServer, fake_time: FakeTime, make_client: Callable[..., SourceClient]
) -> MakeJson:
    def make(
        *,
        category: str = "inkomen",
        url: str = "/bronnen/inkomen/{bsn}",
        mapping: Mapping[str, str] = INKOMEN_MAPPING,
        schema: Mapping[str, Any] = INKOMEN_SCHEMA,
        **kwargs: Any,
    ) -> JsonSourceConnector:
        return JsonSourceConnector(
            name=category,
            category=category,
            url_template=standin.base_url + url,
            client=make_client(name=category),
            schema=schema,
            mapping=mapping,
            wall_clock=fake_time.wall_clock,
            **kwargs,
        )

    return make


def test_get_with_a_url_template_and_pointer_mapping(
    make_json: MakeJson, standin: StandinServer, fake_time: FakeTime
) -> None:
    record = make_json().fetch("999970616", "inkomen")

    income = income_of("999970616")
    assert record == FetchedRecord(
        category="inkomen",
        data={"jaar": income["jaar"], "regels": income["regels"], "bron": "stand-in inkomen"},
        source="inkomen",
        fetched_at=fake_time.wall,
    )
    assert "interne_id" not in record.data  # not mapped, not stored
    assert len(standin.state.recorded("inkomen")) == 1


def test_post_with_the_bsn_in_the_body_and_a_whole_object_mapping(
    make_json: MakeJson, standin: StandinServer
) -> None:
    connector = make_json(
        category="zaken",
        url="/bronnen/zaken",
        method="POST",
        body_template={"bsn": "{bsn}", "filter": {"status": ["in behandeling"]}},
        mapping={"": "/data"},
        schema=ZAKEN_SCHEMA,
    )

    record = connector.fetch("999970616")

    assert record.data == {"zaken": cases_of("999970616"), "aantal": 1}
    [request] = standin.state.recorded("zaken")
    assert request.body == {"bsn": "999970616", "filter": {"status": ["in behandeling"]}}


def test_404_means_person_not_found(make_json: MakeJson, unknown_bsn: str) -> None:
    with pytest.raises(PersonNotFoundError):
        make_json().fetch(unknown_bsn)


def test_a_mapping_that_misses_required_data_fails_validation(make_json: MakeJson) -> None:
    connector = make_json(mapping={"/jaar": "/resultaat/jaar", "/regels": "/resultaat/lines"})

    with pytest.raises(InvalidAnswerError) as invalid:
        connector.fetch("999970616")

    assert invalid.value.keyword == "required"


def test_an_answer_of_the_wrong_type_fails_validation_without_quoting_it(make_json: MakeJson) -> None:
    connector = make_json(mapping={"/jaar": "/meta/bron", "/regels": "/resultaat/regels"})

    with pytest.raises(InvalidAnswerError) as invalid:
        connector.fetch("999970616")

    assert (invalid.value.path, invalid.value.keyword) == ("/jaar", "type")
    assert "stand-in" not in str(invalid.value)


def test_a_json_source_is_retried_like_any_other(
    make_json: MakeJson, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.inject("inkomen", 502)

    assert make_json().fetch("999970616").data["jaar"] == 2025
    assert len(fake_time.sleeps) == 1


def test_nothing_is_sent_for_an_invalid_bsn_or_another_category(
    make_json: MakeJson, standin: StandinServer
) -> None:
    connector = make_json()

    with pytest.raises(InvalidBsnError):
        connector.fetch("999999245")
    with pytest.raises(UnknownSourceError):
        connector.fetch("999970616", "brp.persoon")
    assert standin.state.recorded("inkomen") == []


@pytest.mark.parametrize(
    ("url", "mapping", "body"),
    [
        ("/bronnen/inkomen", INKOMEN_MAPPING, None),  # the BSN goes nowhere
        ("/bronnen/inkomen/{bsn}", {"jaar": "/resultaat/jaar"}, None),  # not a pointer
        ("/bronnen/inkomen/{bsn}", {}, None),
    ],
)
def test_bad_configuration_is_refused(
    make_json: MakeJson, url: str, mapping: dict[str, str], body: Any
) -> None:
    with pytest.raises(ConnectorConfigError):
        make_json(url=url, mapping=mapping, body_template=body)


def test_json_pointer_resolve_and_assign() -> None:
    document = {"a/b": {"~x": [10, 20]}, "list": [{"k": 1}]}

    assert resolve(document, "/a~1b/~0x/1") == 20
    assert resolve(document, "/list/0/k") == 1
    assert resolve(document, "") is document
    assert resolve(document, "/list/01") is MISSING
    assert resolve(document, "/list/5") is MISSING
    assert resolve(document, "/a~1b/~0x/1/deeper") is MISSING
    assert assign({}, "/x/y", 1) == {"x": {"y": 1}}
    assert assign({"x": 1}, "", {"y": 2}) == {"y": 2}
    with pytest.raises(TypeError):
        assign({"x": 1}, "/x/y", 2)
