"""The default record categories: one JSON Schema (draft 2020-12) file per category code.

Two annotations of Kluis's own (JSON Schema ignores ``x-`` keywords): ``x-kluis-special`` (GDPR
art. 9 / youth care: extra scrutiny) and ``x-kluis-registry`` (the category is a copy of a base
registry, such as the BRP: a department with a write grant may have it refreshed from the registry,
``POST /api/v1/records/{category}/refresh``, but never write its own version).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


def default_categories() -> dict[str, dict[str, Any]]:
    """Category code -> JSON Schema, read from the ``*.json`` files beside this module."""
    found: dict[str, dict[str, Any]] = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = json.loads(entry.read_text(encoding="utf-8"))
    return dict(sorted(found.items()))


def fed_by_registry(code: str, stored_schema: str | None) -> bool:
    """Whether category ``code`` is a base registry's copy: by its default definition (also for
    tenants whose stored schema predates the annotation) or by its stored schema's annotation."""
    default = _defaults().get(code)
    if default is not None and default.get("x-kluis-registry") is True:
        return True
    if stored_schema is None:
        return False
    return json.loads(stored_schema).get("x-kluis-registry") is True


@cache
def _defaults() -> dict[str, dict[str, Any]]:
    return default_categories()
