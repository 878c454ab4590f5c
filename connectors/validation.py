"""Validation of mapped records against a category's JSON Schema (draft 2020-12).

Errors name the place (a JSON pointer) and the failed keyword, never the offending value: the
value is personal data, and jsonschema's own messages quote it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from connectors.errors import ConnectorConfigError, InvalidAnswerError


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class RecordValidator:
    """Checks documents of one category; built once per connector, reused for every answer."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError:
            raise ConnectorConfigError("the category schema is not a valid JSON Schema") from None
        # Formats (``date``) are asserted too: an impossible date must not be stored.
        self._validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def validate(self, data: Any) -> None:
        error = best_match(self._validator.iter_errors(data))
        if error is not None:
            raise InvalidAnswerError(
                "it does not match the category schema",
                path=json_pointer(error.absolute_path),
                keyword=str(error.validator),
            )
