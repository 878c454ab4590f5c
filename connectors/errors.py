"""Errors of the connectors.

    ConnectorError                    base; ``reason`` is a fixed code for the audit entry
    ├── ConnectorConfigError          the connector configuration is invalid (nothing was sent)
    ├── UnknownSourceError            no such tenant, source or category in the registry
    ├── InvalidBsnError               the BSN fails the 11-proef (nothing was sent)
    ├── PersonNotFoundError           the source does not know this person
    ├── SourceForbiddenError          401/403: our credentials are refused or not authorised
    ├── SourceRequestError            another 4xx: the source rejected our request (a bug or config)
    ├── SourceUnavailableError        timeout, connection error, 429/5xx after bounded retries
    │   └── CircuitOpenError          the source's circuit breaker is open (nothing was sent)
    └── InvalidAnswerError            the answer is not JSON, has the wrong shape, is about another
                                      person, or fails the category's JSON Schema

Messages are safe to log and to show: they never contain a BSN, a name, a secret or any part of
an answer. Whatever detail is safe (a JSON path, an HTTP status, a schema keyword) is kept in
attributes for the audit entry.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every connector error."""

    reason: str = "connector_error"


class ConnectorConfigError(ConnectorError):
    reason = "config_invalid"


class UnknownSourceError(ConnectorError):
    reason = "unknown_source"


class InvalidBsnError(ConnectorError):
    reason = "invalid_bsn"

    def __init__(self) -> None:
        super().__init__("invalid BSN: it must be nine digits that pass the 11-proef")


class PersonNotFoundError(ConnectorError):
    reason = "person_not_found"

    def __init__(self) -> None:
        super().__init__("person not found at the source")


class SourceForbiddenError(ConnectorError):
    """The source refused us: ``status`` 401 (credentials) or 403 (not authorised)."""

    reason = "source_forbidden"

    def __init__(self, status: int) -> None:
        what = "refused our credentials" if status == 401 else "does not authorise this request"
        super().__init__(f"the source {what} (HTTP {status})")
        self.status = status


class SourceRequestError(ConnectorError):
    """The source rejected the request with a 4xx other than 401/403 (or a 404 it should not send).

    ``invalid_params`` holds the parameter names the source named (``fields[3]``), never values.
    """

    reason = "source_rejected_request"

    def __init__(self, status: int, invalid_params: tuple[str, ...] = ()) -> None:
        super().__init__(f"the source rejected the request (HTTP {status})")
        self.status = status
        self.invalid_params = invalid_params


class SourceUnavailableError(ConnectorError):
    """The source did not answer usefully within the retry budget.

    ``cause`` is a short code: ``timeout``, ``connection``, ``http_503``, ``retry_after_too_long``…
    """

    reason = "source_unavailable"

    def __init__(self, cause: str, attempts: int) -> None:
        super().__init__(f"the source is unavailable ({cause}) after {attempts} attempt(s)")
        self.cause = cause
        self.attempts = attempts


class CircuitOpenError(SourceUnavailableError):
    reason = "circuit_open"

    def __init__(self) -> None:
        super().__init__("circuit_open", 0)


class InvalidAnswerError(ConnectorError):
    """The answer cannot be used. ``path`` is a JSON pointer into the answer or the mapped record,
    ``keyword`` the failed JSON Schema keyword (``required``, ``pattern``…) when there is one."""

    reason = "invalid_answer"

    def __init__(self, problem: str, *, path: str = "", keyword: str | None = None) -> None:
        where = f" at {path}" if path else ""
        super().__init__(f"the source's answer is invalid: {problem}{where}")
        self.problem = problem
        self.path = path
        self.keyword = keyword
