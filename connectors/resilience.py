"""Retry policy and circuit breaker, free of I/O so they can be tested with a fake clock.

Time comes in as arguments: ``monotonic`` (seconds, for cool-downs and token expiry), ``wall_clock``
(aware datetimes, for ``fetched_at`` and HTTP-date ``Retry-After`` values) and ``sleep``. The
defaults below are the only place in the package that reads the real clocks.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from connectors.errors import CircuitOpenError

Monotonic = Callable[[], float]
WallClock = Callable[[], datetime]
Sleep = Callable[[float], None]

#: Statuses that mean "try again later": rate limited, or a server-side problem.
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def system_wall_clock() -> datetime:
    return datetime.now(UTC)


def system_monotonic() -> float:
    return time.monotonic()


def system_sleep(seconds: float) -> None:
    time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    ``max_attempts`` counts the first try. The n-th retry waits a random time in
    ``[0, min(max_delay, base_delay * 2**(n-1))]`` (full jitter spreads clients that failed together)
    but never less than the source's ``Retry-After``. A ``Retry-After`` beyond ``max_retry_after``
    is not waited for: the call fails at once, so a long outage does not stall an import.
    """

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 30.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None means: do not retry."""
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        cap = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        # Not a secret: jitter only spreads load, so the ordinary PRNG is right here.
        jittered = rng.uniform(0.0, cap)
        return max(jittered, retry_after or 0.0)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a source that keeps failing, and probes it again after a cool-down.

    Closed: calls pass; ``failure_threshold`` consecutive failed calls open the circuit.
    Open: calls fail at once with :class:`CircuitOpenError` until ``reset_timeout`` seconds passed.
    Half-open: one probe call passes (others still fail fast); its success closes the circuit,
    its failure opens it for another cool-down. Thread-safe, so one breaker can guard a source
    that several workers use.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        monotonic: Monotonic = system_monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go out now."""
        with self._lock:
            self._maybe_half_open()
            if self._state is CircuitState.OPEN:
                raise CircuitOpenError
            if self._state is CircuitState.HALF_OPEN:
                if self._probe_in_flight:
                    raise CircuitOpenError
                self._probe_in_flight = True

    def record_success(self) -> None:
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0
            self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._probe_in_flight = False
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or self._failures >= self._threshold:
                self._state = CircuitState.OPEN
                self._opened_at = self._monotonic()

    def release(self) -> None:
        """End a call that says nothing about the source's health (a local error)."""
        with self._lock:
            self._probe_in_flight = False

    def _maybe_half_open(self) -> None:
        if self._state is CircuitState.OPEN and self._monotonic() - self._opened_at >= self._reset_timeout:
            self._state = CircuitState.HALF_OPEN
            self._probe_in_flight = False
