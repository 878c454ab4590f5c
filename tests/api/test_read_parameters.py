"""The read endpoint's quick parameter check accepts exactly what its pydantic constraints accept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kluis.api import records

CATEGORIES = [
    "inkomen",
    "jeugd.casus",
    "a_1.b2",
    "a" * 64,
    "a" * 65,
    "Inkomen",
    "inkomen\n",
    "\ninkomen",
    "inkomen.",
    ".inkomen",
    "a..b",
    "1abc",
    "ïnkomen",
    "inkomen ",
    "",
    "a.b.c.d",
    "\uff41bc",  # a full-width letter: not ASCII
]
FIELDS = ["", "a,b", "maandinkomen, werkgever", "a;b", "x" * 1000, "x" * 1001, "a\n", "a\u00a0b", "-_.,"]


def accepted(adapter: object, value: str) -> bool:
    try:
        adapter.validate_python(value)  # type: ignore[attr-defined]
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("category", CATEGORIES)
def test_quick_category_check_agrees_with_pydantic(category: str) -> None:
    assert records._plainly_valid(category, None) == accepted(records._CATEGORY, category)


@pytest.mark.parametrize("fields", FIELDS)
def test_quick_fields_check_agrees_with_pydantic(fields: str) -> None:
    assert records._plainly_valid("inkomen", fields) == accepted(records._FIELDS, fields)
