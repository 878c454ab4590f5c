"""Values the connectors hand to the shell: small, frozen, and careful with what they print.

BSNs are kept out of ``repr`` so that an accidental log line or assertion message does not leak
them; the values are still there for the shell to store (encrypted) and to act upon.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from connectors.errors import ConnectorError, InvalidAnswerError


@dataclass(frozen=True, slots=True)
class FetchedRecord:
    """One validated document of one category, as a source delivered it at ``fetched_at``.

    ``data`` already passed the category's JSON Schema; ``source`` is the configured source name
    (``brp``, ``inkomen``), which the shell records as the record's provenance.
    """

    category: str
    data: dict[str, Any] = field(repr=False)
    source: str
    fetched_at: datetime


class GezagType(enum.StrEnum):
    """The kinds of parental authority / guardianship of the BRP API (``Gezagsrelatie.type``)."""

    GEZAMENLIJK_OUDERLIJK = "GezamenlijkOuderlijkGezag"
    EENHOOFDIG_OUDERLIJK = "EenhoofdigOuderlijkGezag"
    GEZAMENLIJK = "GezamenlijkGezag"
    VOOGDIJ = "Voogdij"
    TIJDELIJK_GEEN = "TijdelijkGeenGezag"
    NIET_TE_BEPALEN = "GezagNietTeBepalen"

    @property
    def grants_authority(self) -> bool:
        """Whether adults in such a relation actually hold authority over the minor."""
        return self not in {GezagType.TIJDELIJK_GEEN, GezagType.NIET_TE_BEPALEN}


@dataclass(frozen=True, slots=True)
class Gezaghouder:
    """An adult in a gezag relation: a parent or a third party (``bsn`` None when unknown)."""

    rol: Literal["ouder", "derde"]
    bsn: str | None = field(default=None, repr=False)

    def to_record(self) -> dict[str, Any]:
        return {"rol": self.rol} | ({"bsn": self.bsn} if self.bsn is not None else {})


@dataclass(frozen=True, slots=True)
class GezagRelation:
    """Who holds authority over one minor; what the portal needs to admit a representative."""

    type: GezagType
    minderjarige_bsn: str | None = field(repr=False)
    meerderjarigen: tuple[Gezaghouder, ...] = ()
    toelichting: str | None = field(default=None, repr=False)

    def grants_authority_to(self, adult_bsn: str) -> bool:
        """True when ``adult_bsn`` holds authority over the minor in this relation."""
        return self.type.grants_authority and any(h.bsn == adult_bsn for h in self.meerderjarigen)

    def to_record(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": self.type.value}
        if self.minderjarige_bsn is not None:
            item["minderjarige_bsn"] = self.minderjarige_bsn
        item["meerderjarigen"] = [h.to_record() for h in self.meerderjarigen]
        if self.toelichting is not None:
            item["toelichting"] = self.toelichting
        return item

    @classmethod
    def from_record(cls, item: Mapping[str, Any]) -> GezagRelation:
        """Read one item of a stored ``brp.persoon`` record's ``gezag`` list (already validated)."""
        try:
            holders = tuple(
                Gezaghouder(rol=h["rol"], bsn=h.get("bsn")) for h in item.get("meerderjarigen", ())
            )
            return cls(
                type=GezagType(item["type"]),
                minderjarige_bsn=item.get("minderjarige_bsn"),
                meerderjarigen=holders,
                toelichting=item.get("toelichting"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidAnswerError("not a gezag relation", path="/gezag") from exc


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """Where a bulk import stands; ``total`` is None when the input has no length."""

    processed: int
    total: int | None
    imported: int
    skipped: int
    failed: int


@dataclass(frozen=True, slots=True)
class SkippedBsn:
    """An input item that was not sent to the source because it is not a valid BSN.

    ``position`` is the 0-based index in the input, which is how an operator finds it again.
    """

    position: int
    bsn: str = field(repr=False)
    reason: str = "invalid_bsn"


@dataclass(frozen=True, slots=True)
class FailedImport:
    """A person the source could not deliver (not found, invalid answer)."""

    position: int
    bsn: str = field(repr=False)
    error: ConnectorError


@dataclass(frozen=True, slots=True)
class BulkResult:
    """The outcome of a bulk run.

    ``cursor`` is the number of input items fully handled: pass it as ``start_at`` to resume.
    ``aborted`` is the systemic error (source down, credentials refused) that stopped the run early.
    """

    imported: int
    skipped: tuple[SkippedBsn, ...]
    failed: tuple[FailedImport, ...]
    cursor: int
    aborted: ConnectorError | None = None

    @property
    def completed(self) -> bool:
        return self.aborted is None
