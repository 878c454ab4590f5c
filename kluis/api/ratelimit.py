"""Rate limits (a sliding window of one minute): per department client on the data API, per
address on the OAuth endpoints where clients authenticate.

The default counts in process memory, so with several nodes each node enforces the limit on its own
share of the traffic; configure ``KLUIS_REDIS_URL`` to share the counters between nodes (the
``RedisRateLimiter``). Exceeding the limit answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Protocol

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, now: float) -> float | None:
        """Count one request; ``None`` when allowed, else the seconds until the next is allowed."""


class MemoryRateLimiter:
    """Two fixed one-minute windows weighted into a sliding estimate; bounded number of keys."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: OrderedDict[str, tuple[int, int, int]] = OrderedDict()  # key -> (window, prev, cur)
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def hit(self, key: str, limit: int, now: float) -> float | None:
        window = int(now // 60)
        with self._lock:
            start, previous, current = self._windows.pop(key, (window, 0, 0))
            if start != window:
                previous, current = (current if start == window - 1 else 0), 0
            elapsed = (now % 60) / 60
            estimate = previous * (1 - elapsed) + current
            if estimate + 1 > limit:
                self._windows[key] = (window, previous, current)
                return max(1.0, math.ceil(60 * (1 - elapsed)))
            self._windows[key] = (window, previous, current + 1)
            while len(self._windows) > self._max_keys:
                self._windows.popitem(last=False)
        return None


class RedisRateLimiter:
    """Shared counters for several nodes: one INCR + EXPIRE per request and key."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)

    def hit(self, key: str, limit: int, now: float) -> float | None:
        window = int(now // 60)
        name = f"kluis:rl:{key}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        count = int(pipe.execute()[0])
        if count > limit:
            return max(1.0, math.ceil(60 - now % 60))
        return None


def per_address(
    limiter: RateLimiter, request: HTTPConnection, kind: str, limit: int, now: float
) -> float | None:
    """Count one request of ``kind`` (e.g. ``oauth``, ``login``) from the request's client address:
    the address the server saw (behind a proxy: the forwarded one, from ``FORWARDED_ALLOW_IPS``)."""
    address = request.client.host if request.client is not None else "unknown"
    return limiter.hit(f"{kind}:{address}", limit, now)


CLIENT_LIMIT_REACHED = "the rate limit of this client is reached; retry later"


class RateLimitedError(HTTPException):
    """429 with Retry-After; an HTTPException so the problem handler renders it as problem+json."""

    def __init__(self, retry_after: float, detail: str = CLIENT_LIMIT_REACHED) -> None:
        super().__init__(429, detail, headers={"Retry-After": str(int(retry_after))})
