"""A generic JSON source (income, case systems): a URL template, a method, auth, and a mapping of
JSON pointers from the source's answer into the category's document.

``mapping`` maps a *target* pointer in the record to a *source* pointer in the answer, e.g.
``{"/jaar": "/data/jaar", "/inkomsten": "/data/regels"}``; the target ``""`` takes a whole
object as the record. A source pointer that leads nowhere leaves its target out, and the
category's schema decides whether that is acceptable.

Prefer ``POST`` with the BSN in the body (``body_template``) where the source allows it: a BSN in
a URL ends up in access logs along the way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal
from urllib.parse import quote

from connectors.client import SourceClient, json_answer, raise_for_refusal
from connectors.errors import (
    ConnectorConfigError,
    InvalidAnswerError,
    InvalidBsnError,
    UnknownSourceError,
)
from connectors.pointer import MISSING, assign, parse, resolve
from connectors.resilience import WallClock, system_wall_clock
from connectors.schemas import FetchedRecord
from connectors.validation import RecordValidator
from vault.bsn import is_valid_bsn

BSN_PLACEHOLDER = "{bsn}"


class JsonSourceConnector:
    """Fetches one category from a JSON API and maps it with JSON pointers."""

    def __init__(
        self,
        *,
        name: str,
        category: str,
        url_template: str,
        client: SourceClient,
        schema: Mapping[str, Any],
        mapping: Mapping[str, str],
        method: Literal["GET", "POST"] = "GET",
        body_template: Any = None,
        not_found_statuses: Collection[int] = (404,),
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        if BSN_PLACEHOLDER not in url_template and not _mentions_bsn(body_template):
            raise ConnectorConfigError("the URL template or the body must contain {bsn}")
        if not mapping:
            raise ConnectorConfigError("the mapping is empty")
        try:
            for target, source in mapping.items():
                parse(target)
                parse(source)
        except ValueError:
            raise ConnectorConfigError("the mapping holds an invalid JSON pointer") from None
        self._name = name
        self._category = category
        self._url_template = url_template
        self._client = client
        self._validator = RecordValidator(schema)
        # The whole-document target goes first so that narrower targets refine it.
        self._mapping = sorted(mapping.items(), key=lambda item: item[0] != "")
        self._method = method
        self._body_template = body_template
        self._not_found = frozenset(not_found_statuses)
        self._wall_clock = wall_clock

    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> frozenset[str]:
        return frozenset({self._category})

    @property
    def client(self) -> SourceClient:
        return self._client

    def close(self) -> None:
        self._client.close()

    def fetch(self, bsn: str, category: str | None = None) -> FetchedRecord:
        if category is not None and category != self._category:
            raise UnknownSourceError("this source does not deliver that category")
        if not is_valid_bsn(bsn):
            raise InvalidBsnError
        url = self._url_template.replace(BSN_PLACEHOLDER, quote(bsn, safe=""))
        body = _substitute(self._body_template, bsn) if self._body_template is not None else None
        response = self._client.send(self._method, url, json_body=body)
        raise_for_refusal(response, not_found=self._not_found)
        fetched_at = self._wall_clock()
        data = self._map(json_answer(response))
        self._validator.validate(data)
        return FetchedRecord(category=self._category, data=data, source=self._name, fetched_at=fetched_at)

    def _map(self, answer: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for target, source in self._mapping:
            value = resolve(answer, source)
            if value is MISSING:
                continue
            try:
                data = assign(data, target, value)
            except TypeError:
                raise InvalidAnswerError("the answer does not fit the mapping", path=source) from None
        return data


def _mentions_bsn(template: Any) -> bool:
    if isinstance(template, str):
        return BSN_PLACEHOLDER in template
    if isinstance(template, dict):
        return any(_mentions_bsn(v) for v in template.values())
    if isinstance(template, list):
        return any(_mentions_bsn(v) for v in template)
    return False


def _substitute(template: Any, bsn: str) -> Any:
    """The body template with every ``{bsn}`` in its strings replaced."""
    if isinstance(template, str):
        return template.replace(BSN_PLACEHOLDER, bsn)
    if isinstance(template, dict):
        return {k: _substitute(v, bsn) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, bsn) for v in template]
    return template
