"""The default record categories: one JSON Schema (draft 2020-12) file per category code."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def default_categories() -> dict[str, dict[str, Any]]:
    """Category code -> JSON Schema, read from the ``*.json`` files beside this module."""
    found: dict[str, dict[str, Any]] = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = json.loads(entry.read_text(encoding="utf-8"))
    return dict(sorted(found.items()))
