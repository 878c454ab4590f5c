"""Per-client rate limits: in memory (one node) and in Redis (shared by nodes)."""

from __future__ import annotations

import secrets

import pytest
import redis

from kluis.api.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"


def limiters() -> list[RateLimiter]:
    return [MemoryRateLimiter(), RedisRateLimiter(REDIS_URL)]


@pytest.mark.parametrize("limiter", limiters(), ids=["memory", "redis"])
def test_the_limit_holds_within_a_minute_and_frees_up_afterwards(limiter: RateLimiter) -> None:
    key = "client:" + secrets.token_hex(4)
    start = 6_000_000.0  # the start of a one-minute window
    assert [limiter.hit(key, 3, start + i) for i in range(3)] == [None, None, None]
    wait = limiter.hit(key, 3, start + 3)
    assert wait is not None and 1 <= wait <= 60
    assert limiter.hit("client:other" + key, 3, start + 3) is None  # limits are per client
    assert limiter.hit(key, 3, start + 60 * 3) is None  # windows later: allowed again


def test_redis_is_really_there() -> None:
    assert redis.Redis.from_url(REDIS_URL).ping()
