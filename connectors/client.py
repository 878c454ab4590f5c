"""One configured HTTP source: an httpx client with timeouts, auth, retries and a circuit breaker.

The transport seam: pass ``client`` (a shared :class:`httpx.Client`) or ``transport`` (any
:class:`httpx.BaseTransport`) to run a connector against something other than the network.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Collection
from typing import Any

import httpx

from connectors.auth import NoAuth, SourceAuth
from connectors.errors import (
    ConnectorError,
    InvalidAnswerError,
    PersonNotFoundError,
    SourceForbiddenError,
    SourceRequestError,
    SourceUnavailableError,
)
from connectors.resilience import (
    CircuitBreaker,
    RetryPolicy,
    Sleep,
    WallClock,
    parse_retry_after,
    system_sleep,
    system_wall_clock,
)

logger = logging.getLogger(__name__)

_SAFE_PARAM_NAME = re.compile(r"^[A-Za-z0-9._\[\]]{1,60}$")


class SourceClient:
    """Sends requests to one source and returns the first non-retryable response.

    Retryable outcomes (timeouts, connection errors, 429 and 5xx) are retried per the
    :class:`RetryPolicy`, honouring ``Retry-After``; when the budget is spent the call raises
    :class:`SourceUnavailableError` and counts as one failure for the :class:`CircuitBreaker`.
    """

    def __init__(
        self,
        *,
        name: str,
        auth: SourceAuth | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = system_sleep,
        wall_clock: WallClock = system_wall_clock,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._auth: SourceAuth = auth if auth is not None else NoAuth()
        self._retry = retry if retry is not None else RetryPolicy()
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._timeout = httpx.Timeout(timeout)
        self._owns_client = client is None
        # Redirects are not followed: a source that redirects is misconfigured, and following
        # could carry credentials or a BSN to another host.
        self._client = (
            client
            if client is not None
            else httpx.Client(transport=transport, follow_redirects=False, timeout=self._timeout)
        )
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not a secret

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def send(self, method: str, url: str, *, json_body: Any = None) -> httpx.Response:
        """Send one logical request; return a response whose status is not retryable."""
        self.breaker.before_call()
        try:
            response = self._attempts(method, url, json_body)
        except SourceUnavailableError:
            self.breaker.record_failure()
            raise
        except ConnectorError:
            # The source (or its token endpoint) answered with a definite no: it is up.
            self.breaker.record_success()
            raise
        except BaseException:
            # Our own failure, not evidence about the source: free the probe slot, change nothing.
            self.breaker.release()
            raise
        self.breaker.record_success()
        return response

    def _attempts(self, method: str, url: str, json_body: Any) -> httpx.Response:
        content = None if json_body is None else json.dumps(json_body, ensure_ascii=False).encode()
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._client.send(self._build(method, url, content))
            except httpx.TimeoutException:
                cause = "timeout"
            except httpx.TransportError:
                cause = "connection"
            except httpx.RequestError:  # e.g. a garbled content encoding
                cause = "protocol"
            except SourceUnavailableError as exc:  # the token endpoint is down
                cause = exc.cause
            else:
                if response.status_code == 401 and not refreshed and self._auth.invalidate():
                    # An expired or revoked token: one immediate try with a fresh one, not counted.
                    refreshed = True
                    attempt -= 1
                    continue
                if response.status_code not in self._retry.retry_statuses:
                    return response
                cause = f"http_{response.status_code}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._wall_clock())
            if attempt >= self._retry.max_attempts:
                break
            delay = self._retry.delay(attempt, retry_after, self._rng)
            if delay is None:
                cause = "retry_after_too_long"
                break
            logger.info(
                "source %s: attempt %d failed (%s); retrying in %.2fs", self.name, attempt, cause, delay
            )
            self._sleep(delay)
        logger.warning("source %s: unavailable (%s) after %d attempt(s)", self.name, cause, attempt)
        raise SourceUnavailableError(cause, attempt)

    def _build(self, method: str, url: str, content: bytes | None) -> httpx.Request:
        headers = {"Accept": "application/json", **self._auth.headers(self._client)}
        if content is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return self._client.build_request(
            method, url, content=content, headers=headers, timeout=self._timeout
        )


def raise_for_refusal(response: httpx.Response, *, not_found: Collection[int] = ()) -> None:
    """Turn a non-2xx, non-retryable response into the matching :class:`ConnectorError`."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in not_found:
        raise PersonNotFoundError
    if status in {401, 403}:
        raise SourceForbiddenError(status)
    raise SourceRequestError(status, _invalid_param_names(response))


def json_answer(response: httpx.Response) -> Any:
    """The response's JSON document, or :class:`InvalidAnswerError` if it is not JSON."""
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidAnswerError("not a JSON answer")
    try:
        return response.json()
    except ValueError:
        raise InvalidAnswerError("not a JSON answer") from None


def _invalid_param_names(response: httpx.Response) -> tuple[str, ...]:
    """Parameter names from an RFC 9457 problem's ``invalidParams``; values are never read."""
    try:
        problem = response.json()
    except ValueError:
        return ()
    params = problem.get("invalidParams") if isinstance(problem, dict) else None
    if not isinstance(params, list):
        return ()
    names = (p.get("name") for p in params if isinstance(p, dict))
    return tuple(n for n in names if isinstance(n, str) and _SAFE_PARAM_NAME.match(n))
