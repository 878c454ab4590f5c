"""The package's surface: exported names, the error hierarchy and messages, the category schema."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import connectors
from connectors import (
    BRP_PERSOON_FIELDS,
    CircuitOpenError,
    ConnectorConfigError,
    ConnectorError,
    FetchedRecord,
    InvalidAnswerError,
    InvalidBsnError,
    PersonNotFoundError,
    SourceForbiddenError,
    SourceRequestError,
    SourceUnavailableError,
    UnknownSourceError,
)
from connectors.errors import ConnectorError as BaseFromModule
from connectors.validation import RecordValidator

EXPORTED = {
    "BRP_PERSOON",
    "BRP_PERSOON_FIELDS",
    "ApiKeyAuth",
    "BatchSourceConnector",
    "BrpPersonenConnector",
    "BulkProgress",
    "BulkResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ClientCredentialsAuth",
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorRegistry",
    "FailedImport",
    "FetchedRecord",
    "GezagRelation",
    "GezagType",
    "Gezaghouder",
    "InvalidAnswerError",
    "InvalidBsnError",
    "JsonSourceConnector",
    "NoAuth",
    "PersonNotFoundError",
    "RetryPolicy",
    "SkippedBsn",
    "SourceAuth",
    "SourceClient",
    "SourceConnector",
    "SourceForbiddenError",
    "SourceRequestError",
    "SourceUnavailableError",
    "UnknownSourceError",
    "adult_from",
    "gezag_relations",
    "import_all",
    "map_persoon",
}


def test_the_public_surface_is_pinned() -> None:
    assert set(connectors.__all__) == EXPORTED
    assert all(hasattr(connectors, name) for name in EXPORTED)


def test_every_error_has_one_base_and_its_own_audit_reason() -> None:
    errors = [
        ConnectorConfigError("x"),
        UnknownSourceError("x"),
        InvalidBsnError(),
        PersonNotFoundError(),
        SourceForbiddenError(403),
        SourceRequestError(400, ("fields[0]",)),
        SourceUnavailableError("http_503", 4),
        CircuitOpenError(),
        InvalidAnswerError("expected a list", path="/kinderen"),
    ]

    assert all(isinstance(e, BaseFromModule) for e in errors)
    assert isinstance(CircuitOpenError(), SourceUnavailableError)
    reasons = [e.reason for e in errors]
    assert len(set(reasons)) == len(reasons)
    assert all(r.replace("_", "").isalpha() for r in reasons)


def test_the_error_hierarchy_is_drawn_in_the_module_docstring() -> None:
    doc = inspect.getdoc(connectors.errors) or ""
    names = [
        name
        for name, obj in vars(connectors.errors).items()
        if inspect.isclass(obj) and issubclass(obj, ConnectorError)
    ]
    assert names and all(name in doc for name in names)


def test_fetched_records_and_gezag_values_keep_personal_data_out_of_repr() -> None:
    from datetime import UTC, datetime

    record = FetchedRecord("brp.persoon", {"naam": {"geslachtsnaam": "Kootwijk"}}, "brp", datetime.now(UTC))
    relation = connectors.GezagRelation(
        connectors.GezagType.VOOGDIJ, "999970215", (connectors.Gezaghouder("derde", "999970203"),)
    )

    assert "Kootwijk" not in repr(record)
    assert "999970215" not in repr(relation) and "999970203" not in repr(relation)


# -- the brp.persoon category schema ------------------------------------------------------------------


def test_the_category_schema_is_a_draft_2020_12_schema_with_the_kluis_keys(
    brp_schema: dict[str, Any],
) -> None:
    Draft202012Validator.check_schema(brp_schema)
    assert brp_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert brp_schema["title"] and brp_schema["description"]
    assert brp_schema["x-kluis-special"] is False
    assert brp_schema["additionalProperties"] is False
    assert set(brp_schema["required"]) == {
        "naam",
        "nationaliteiten",
        "ouders",
        "kinderen",
        "partners",
        "gezag",
    }


MINIMAL: dict[str, Any] = {
    "naam": {},
    "nationaliteiten": [],
    "ouders": [],
    "kinderen": [],
    "partners": [],
    "gezag": [],
}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"extra": 1}, ""),
        ({"geboorte": {"datum": "16-02-1990"}}, "/geboorte/datum"),
        ({"geboorte": {"datum": "1990-02-30"}}, "/geboorte/datum"),
        ({"geboorte": {"datum": "1990-13"}}, "/geboorte/datum"),
        ({"verblijfplaats": {"type": "Adres", "postcode": "2511 ca"}}, "/verblijfplaats/postcode"),
        ({"verblijfplaats": {"type": "Woonboot"}}, "/verblijfplaats"),
        ({"kinderen": [{"bsn": "12345678"}]}, "/kinderen/0/bsn"),
        ({"gezag": [{"type": "Voogdij"}]}, "/gezag/0"),
        ({"gezag": [{"type": "Opa", "meerderjarigen": []}]}, "/gezag/0/type"),
        (
            {"gezag": [{"type": "Voogdij", "meerderjarigen": [{"rol": "oom"}]}]},
            "/gezag/0/meerderjarigen/0/rol",
        ),
        (
            {"nationaliteiten": [{"type": "Nationaliteit", "nationaliteit": {}}]},
            "/nationaliteiten/0/nationaliteit",
        ),
    ],
)
def test_the_category_schema_is_strict(brp_schema: dict[str, Any], change: dict[str, Any], path: str) -> None:
    validator = RecordValidator(brp_schema)
    validator.validate(MINIMAL)

    with pytest.raises(InvalidAnswerError) as invalid:
        validator.validate(MINIMAL | change)

    assert invalid.value.path == path


def test_the_category_accepts_partial_dates(brp_schema: dict[str, Any]) -> None:
    validator = RecordValidator(brp_schema)

    for datum in ("1990-02-16", "1990-02", "1990"):
        validator.validate(MINIMAL | {"geboorte": {"datum": datum}})


def test_the_fields_follow_the_specification_s_path_syntax() -> None:
    import re

    assert 0 < len(BRP_PERSOON_FIELDS) <= 130  # the specification's maxItems
    assert all(re.fullmatch(r"[a-zA-Z0-9\._]{1,200}", f) for f in BRP_PERSOON_FIELDS)
