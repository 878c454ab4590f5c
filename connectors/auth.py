"""How a connector authenticates at a source: an API key header, or OAuth 2.0 client credentials.

Authentication is asked for per attempt (``headers``), so fetching a token is part of the attempt
and gets the same timeouts, retries and circuit breaker as the call it serves.
"""

from __future__ import annotations

import threading
from typing import Protocol

import httpx

from connectors.errors import SourceForbiddenError, SourceUnavailableError
from connectors.resilience import RETRYABLE_STATUSES, Monotonic, system_monotonic


class SourceAuth(Protocol):
    """Credentials for one source."""

    def headers(self, client: httpx.Client) -> dict[str, str]:
        """Headers to add to the next request; may call a token endpoint through ``client``.

        Raises httpx transport errors (retried by the caller), :class:`SourceForbiddenError` when
        the credentials are refused, :class:`SourceUnavailableError` when the token endpoint is down.
        """
        ...

    def invalidate(self) -> bool:
        """Forget cached credentials after a 401; True if fresh ones might be accepted."""
        ...


class NoAuth:
    def headers(self, client: httpx.Client) -> dict[str, str]:
        return {}

    def invalidate(self) -> bool:
        return False


class ApiKeyAuth:
    """A static key in a header (Haal Centraal uses ``X-API-KEY``)."""

    def __init__(self, key: str, *, header: str = "X-API-KEY") -> None:
        self._key = key
        self._header = header

    def __repr__(self) -> str:
        return f"ApiKeyAuth(header={self._header!r})"

    def headers(self, client: httpx.Client) -> dict[str, str]:
        return {self._header: self._key}

    def invalidate(self) -> bool:
        return False


class ClientCredentialsAuth:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4) with a cached bearer token.

    The token is reused until ``expiry_margin`` seconds before it expires, measured on the
    injected monotonic clock; a 401 from the source drops it so the next attempt fetches a new one.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        method: str = "client_secret_basic",
        expiry_margin: float = 30.0,
        monotonic: Monotonic = system_monotonic,
    ) -> None:
        if method not in {"client_secret_basic", "client_secret_post"}:
            raise ValueError("unsupported client authentication method")
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._method = method
        self._margin = expiry_margin
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(token_url={self._token_url!r})"

    def headers(self, client: httpx.Client) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._current_token(client)}"}

    def invalidate(self) -> bool:
        with self._lock:
            had_token = self._token is not None
            self._token = None
        return had_token

    def _current_token(self, client: httpx.Client) -> str:
        with self._lock:
            if self._token is not None and self._monotonic() < self._expires_at:
                return self._token
        # Fetched outside the lock: two threads may both refresh, which is harmless and keeps a
        # slow token endpoint from serialising every caller.
        token, lifetime = self._fetch(client)
        with self._lock:
            self._token = token
            self._expires_at = self._monotonic() + max(0.0, lifetime - self._margin)
        return token

    def _fetch(self, client: httpx.Client) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        headers = {"Accept": "application/json"}
        if self._method == "client_secret_basic":
            basic = httpx.BasicAuth(self._client_id, self._client_secret)
            response = client.post(self._token_url, data=form, auth=basic, headers=headers)
        else:
            form |= {"client_id": self._client_id, "client_secret": self._client_secret}
            response = client.post(self._token_url, data=form, headers=headers)
        if response.status_code in RETRYABLE_STATUSES:
            raise SourceUnavailableError(f"token_endpoint_http_{response.status_code}", 1)
        if response.status_code != 200:
            # RFC 6749 §5.2: invalid_client / unauthorized_client come as 400 or 401.
            raise SourceForbiddenError(401 if response.status_code in {400, 401} else 403)
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
            token_type = str(body.get("token_type", "Bearer"))
        except (ValueError, KeyError, TypeError):
            # ``from None``: the cause could quote the token endpoint's answer.
            raise SourceUnavailableError("token_endpoint_invalid_answer", 1) from None
        if not isinstance(token, str) or not token or token_type.lower() != "bearer":
            raise SourceUnavailableError("token_endpoint_invalid_answer", 1)
        return token, lifetime
