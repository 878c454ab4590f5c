"""Haal Centraal BRP Bevragen, Personen API v2: ``POST /personen`` with
``type: RaadpleegMetBurgerservicenummer``, mapped to the ``brp.persoon`` category.

Per the specification an unknown BSN is not an error but a missing entry in ``personen``; the
connector turns that into :class:`PersonNotFoundError`. An answer about a person we did not ask
for is refused as a whole: it means the source or something in between mixed up requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.brp_mapping import BRP_PERSOON_FIELDS, map_persoon
from connectors.client import SourceClient, json_answer, raise_for_refusal
from connectors.errors import (
    ConnectorError,
    InvalidAnswerError,
    InvalidBsnError,
    PersonNotFoundError,
    UnknownSourceError,
)
from connectors.resilience import WallClock, system_wall_clock
from connectors.schemas import FetchedRecord
from connectors.validation import RecordValidator
from vault.bsn import is_valid_bsn

BRP_PERSOON = "brp.persoon"
#: ``RaadpleegMetBurgerservicenummer.burgerservicenummer`` has ``maxItems: 20``.
MAX_BSNS_PER_REQUEST = 20


class BrpPersonenConnector:
    """Fetches ``brp.persoon`` records from a BRP API Personen v2 endpoint."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        client: SourceClient,
        schema: Mapping[str, Any],
        gemeente_van_inschrijving: str | None = None,
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        self._name = name
        self._url = base_url.rstrip("/") + "/personen"
        self._client = client
        self._validator = RecordValidator(schema)
        self._gemeente = gemeente_van_inschrijving
        self._wall_clock = wall_clock

    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> frozenset[str]:
        return frozenset({BRP_PERSOON})

    @property
    def client(self) -> SourceClient:
        return self._client

    def close(self) -> None:
        self._client.close()

    def fetch(self, bsn: str, category: str = BRP_PERSOON) -> FetchedRecord:
        outcome = self.fetch_many([bsn], category)[bsn]
        if isinstance(outcome, ConnectorError):
            raise outcome
        return outcome

    def fetch_many(
        self, bsns: Sequence[str], category: str = BRP_PERSOON
    ) -> dict[str, FetchedRecord | ConnectorError]:
        if category != BRP_PERSOON:
            raise UnknownSourceError("this source does not deliver that category")
        results: dict[str, FetchedRecord | ConnectorError] = {}
        valid: list[str] = []
        for bsn in dict.fromkeys(bsns):  # distinct, in input order
            if is_valid_bsn(bsn):
                valid.append(bsn)
            else:
                results[bsn] = InvalidBsnError()
        for start in range(0, len(valid), MAX_BSNS_PER_REQUEST):
            results.update(self._fetch_chunk(valid[start : start + MAX_BSNS_PER_REQUEST]))
        return results

    def _fetch_chunk(self, bsns: list[str]) -> dict[str, FetchedRecord | ConnectorError]:
        body: dict[str, Any] = {
            "type": "RaadpleegMetBurgerservicenummer",
            "burgerservicenummer": bsns,
            "fields": list(BRP_PERSOON_FIELDS),
        }
        if self._gemeente is not None:
            body["gemeenteVanInschrijving"] = self._gemeente
        response = self._client.send("POST", self._url, json_body=body)
        raise_for_refusal(response)
        fetched_at = self._wall_clock()
        try:
            personen = _personen(json_answer(response), set(bsns))
        except InvalidAnswerError as exc:
            # The envelope is broken, so no person in this request can be trusted.
            return dict.fromkeys(bsns, exc)
        results: dict[str, FetchedRecord | ConnectorError] = {}
        for bsn in bsns:
            found = personen.get(bsn)
            if found is None:
                results[bsn] = PersonNotFoundError()
            elif isinstance(found, InvalidAnswerError):
                results[bsn] = found
            else:
                results[bsn] = self._record(found, fetched_at)
        return results

    def _record(self, persoon: Mapping[str, Any], fetched_at: datetime) -> FetchedRecord | ConnectorError:
        try:
            data = map_persoon(persoon)
            self._validator.validate(data)
        except InvalidAnswerError as exc:
            return exc
        return FetchedRecord(category=BRP_PERSOON, data=data, source=self._name, fetched_at=fetched_at)


def _personen(answer: Any, asked: set[str]) -> dict[str, Mapping[str, Any] | InvalidAnswerError]:
    """The answer's persons by BSN; raises when the envelope is wrong or names someone not asked."""
    if not isinstance(answer, dict):
        raise InvalidAnswerError("expected an object")
    if answer.get("type", "RaadpleegMetBurgerservicenummer") != "RaadpleegMetBurgerservicenummer":
        raise InvalidAnswerError("unexpected answer type", path="/type")
    personen = answer.get("personen", [])
    if not isinstance(personen, list):
        raise InvalidAnswerError("expected a list", path="/personen")
    found: dict[str, Mapping[str, Any] | InvalidAnswerError] = {}
    for i, persoon in enumerate(personen):
        bsn = persoon.get("burgerservicenummer") if isinstance(persoon, dict) else None
        if not isinstance(bsn, str):
            raise InvalidAnswerError("a person without burgerservicenummer", path=f"/personen/{i}")
        if bsn not in asked:
            raise InvalidAnswerError("the answer is about a person not asked for", path=f"/personen/{i}")
        if bsn in found:
            found[bsn] = InvalidAnswerError("the answer has the person twice", path=f"/personen/{i}")
        else:
            found[bsn] = persoon
    return found
