"""Connectors: pull a resident's data from source registries as validated records.

The package makes outbound HTTP (httpx) and knows nothing of OAuth grants, storage or the audit
log: it returns :class:`FetchedRecord` values or raises a :class:`ConnectorError`, and the shell
stores and audits. Entry points:

- :class:`ConnectorRegistry` (``from_config`` / ``from_json``): tenant → source → connector.
- :class:`SourceConnector` ``.fetch(bsn, category)``; :class:`BrpPersonenConnector` for Haal
  Centraal BRP Personen v2, :class:`JsonSourceConnector` for configured JSON APIs.
- :func:`import_all`: bulk import with invalid-BSN skipping, checkpoints and progress.
- :func:`gezag_relations`: the parental-authority relations of a ``brp.persoon`` record;
  :func:`adult_from`: the day a child of a stored birth date comes of age.
"""

from __future__ import annotations

from connectors.auth import ApiKeyAuth, ClientCredentialsAuth, NoAuth, SourceAuth
from connectors.brp import BRP_PERSOON, BrpPersonenConnector
from connectors.brp_mapping import BRP_PERSOON_FIELDS, adult_from, gezag_relations, map_persoon
from connectors.bulk import import_all
from connectors.client import SourceClient
from connectors.errors import (
    CircuitOpenError,
    ConnectorConfigError,
    ConnectorError,
    InvalidAnswerError,
    InvalidBsnError,
    PersonNotFoundError,
    SourceForbiddenError,
    SourceRequestError,
    SourceUnavailableError,
    UnknownSourceError,
)
from connectors.interfaces import BatchSourceConnector, SourceConnector
from connectors.json_source import JsonSourceConnector
from connectors.registry import ConnectorRegistry
from connectors.resilience import CircuitBreaker, CircuitState, RetryPolicy
from connectors.schemas import (
    BulkProgress,
    BulkResult,
    FailedImport,
    FetchedRecord,
    Gezaghouder,
    GezagRelation,
    GezagType,
    SkippedBsn,
)

__all__ = [
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
]
