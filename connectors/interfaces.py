"""What the shell may rely on from any connector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from connectors.errors import ConnectorError
from connectors.schemas import FetchedRecord


@runtime_checkable
class SourceConnector(Protocol):
    """Pulls one resident's data of one category from one source registry."""

    @property
    def name(self) -> str:
        """The configured source name, recorded as the record's provenance."""
        ...

    @property
    def categories(self) -> frozenset[str]:
        """The categories this connector can deliver."""
        ...

    def fetch(self, bsn: str, category: str) -> FetchedRecord:
        """Fetch, map and validate the resident's ``category`` document.

        Raises :class:`InvalidBsnError` (nothing sent), :class:`PersonNotFoundError`,
        :class:`SourceForbiddenError`, :class:`SourceRequestError`, :class:`SourceUnavailableError`
        (including :class:`CircuitOpenError`), :class:`InvalidAnswerError` and
        :class:`UnknownSourceError` for a category it does not serve. Nothing is stored.
        """
        ...

    def close(self) -> None:
        """Release the HTTP connections this connector owns."""
        ...


@runtime_checkable
class BatchSourceConnector(SourceConnector, Protocol):
    """A connector whose source answers for several residents in one request (BRP: up to 20)."""

    def fetch_many(self, bsns: Sequence[str], category: str) -> dict[str, FetchedRecord | ConnectorError]:
        """One entry per distinct BSN: its record, or the error that concerns that person alone
        (:class:`InvalidBsnError`, :class:`PersonNotFoundError`, :class:`InvalidAnswerError`).

        Errors that concern the whole source (unavailable, forbidden, request rejected) are raised.
        """
        ...
