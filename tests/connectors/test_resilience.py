"""Timeouts, bounded retries with backoff and Retry-After, and the circuit breaker.

The HTTP tests talk to the stand-in over loopback; sleeping and the clocks are fake, so a
"30 second cool-down" takes no time and every delay the connector chose can be inspected.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from connectors import (
    BrpPersonenConnector,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    PersonNotFoundError,
    RetryPolicy,
    SourceClient,
    SourceUnavailableError,
)
from connectors.resilience import parse_retry_after
from tests.connectors.conftest import FakeTime
from tests.support.brp_standin import StandinServer

MakeBrp = Callable[..., BrpPersonenConnector]


def state_of(breaker: CircuitBreaker) -> CircuitState:
    # A function, not the property, so that the type checker does not assume the state is fixed.
    return breaker.state


def test_429_with_retry_after_is_honoured_then_the_answer_comes(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.inject("personen", 429, times=2, retry_after="2")

    record = make_brp().fetch("999970616")

    assert record.data["naam"]["geslachtsnaam"] == "Kootwijk"
    assert fake_time.sleeps == [2.0, 2.0]
    assert len(standin.state.recorded("personen")) == 3


def test_retry_after_as_an_http_date(make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime) -> None:
    # The fake wall clock stands at Tue, 03 Mar 2026 13:02:00 UTC.
    standin.state.inject("personen", 503, retry_after="Tue, 03 Mar 2026 13:02:07 GMT")

    make_brp().fetch("999970616")

    assert fake_time.sleeps == [7.0]


def test_a_retry_after_beyond_our_patience_fails_at_once(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.inject("personen", 429, retry_after="3600")

    with pytest.raises(SourceUnavailableError) as unavailable:
        make_brp().fetch("999970616")

    assert unavailable.value.cause == "retry_after_too_long"
    assert fake_time.sleeps == []
    assert len(standin.state.recorded("personen")) == 1


def test_503_repeatedly_is_retried_a_bounded_number_of_times_with_backoff(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.inject("personen", 503, times=100)
    policy = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=1.5)

    with pytest.raises(SourceUnavailableError) as unavailable:
        make_brp(retry=policy).fetch("999970616")

    assert (unavailable.value.cause, unavailable.value.attempts) == ("http_503", 4)
    assert len(standin.state.recorded("personen")) == 4
    assert len(fake_time.sleeps) == 3
    # Full jitter under an exponential cap: 0.5, 1.0, then the 1.5 ceiling.
    assert all(0 <= s <= cap for s, cap in zip(fake_time.sleeps, [0.5, 1.0, 1.5], strict=True))


def test_a_few_503s_then_success(make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.inject("personen", 503, times=2)

    assert make_brp().fetch("999970616").data["naam"]["voornamen"] == "Kim"
    assert len(fake_time.sleeps) == 2


def test_a_slow_source_times_out_and_is_retried(make_brp: MakeBrp, standin: StandinServer) -> None:
    standin.state.delay = 0.5

    with pytest.raises(SourceUnavailableError) as unavailable:
        make_brp(timeout=0.15, retry=RetryPolicy(max_attempts=2)).fetch("999970616")

    assert (unavailable.value.cause, unavailable.value.attempts) == ("timeout", 2)
    assert len(standin.state.recorded("personen")) == 2


def test_a_source_that_does_not_listen_is_unavailable(
    brp_schema: dict[str, object], make_client: Callable[..., SourceClient]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    connector = BrpPersonenConnector(
        name="brp",
        base_url=f"http://127.0.0.1:{port}/haalcentraal/api/brp",
        client=make_client(retry=RetryPolicy(max_attempts=2)),
        schema=brp_schema,
    )

    with pytest.raises(SourceUnavailableError) as unavailable:
        connector.fetch("999970616")

    assert unavailable.value.cause == "connection"


# -- circuit breaker -------------------------------------------------------------------------------


def test_the_circuit_opens_after_failures_and_half_opens_after_the_cool_down(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30.0, monotonic=fake_time.monotonic)
    connector = make_brp(breaker=breaker, retry=RetryPolicy(max_attempts=1))
    standin.state.inject("personen", 503, times=1000)

    for _ in range(2):
        with pytest.raises(SourceUnavailableError):
            connector.fetch("999970616")
    assert state_of(breaker) is CircuitState.OPEN

    with pytest.raises(CircuitOpenError):
        connector.fetch("999970616")
    assert len(standin.state.recorded("personen")) == 2  # the open circuit sent nothing

    fake_time.advance(29.9)
    with pytest.raises(CircuitOpenError):
        connector.fetch("999970616")

    fake_time.advance(0.1)
    assert state_of(breaker) is CircuitState.HALF_OPEN
    standin.state.clear_faults()  # the source has recovered
    assert connector.fetch("999970616").data["naam"]["geslachtsnaam"] == "Kootwijk"
    assert state_of(breaker) is CircuitState.CLOSED
    assert len(standin.state.recorded("personen")) == 3


def test_a_failed_probe_opens_the_circuit_again(
    make_brp: MakeBrp, standin: StandinServer, fake_time: FakeTime
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10.0, monotonic=fake_time.monotonic)
    connector = make_brp(breaker=breaker, retry=RetryPolicy(max_attempts=1))
    standin.state.inject("personen", 500, times=1000)
    with pytest.raises(SourceUnavailableError):
        connector.fetch("999970616")

    fake_time.advance(10.0)
    with pytest.raises(SourceUnavailableError) as probe:
        connector.fetch("999970616")
    assert not isinstance(probe.value, CircuitOpenError)  # the probe went out …
    with pytest.raises(CircuitOpenError):  # … failed, and the circuit is open again
        connector.fetch("999970616")
    assert len(standin.state.recorded("personen")) == 2


def test_answers_about_a_person_do_not_trip_the_circuit(
    make_brp: MakeBrp, fake_time: FakeTime, unknown_bsn: str
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, monotonic=fake_time.monotonic)
    connector = make_brp(breaker=breaker)

    for _ in range(3):
        with pytest.raises(PersonNotFoundError):
            connector.fetch(unknown_bsn)

    assert state_of(breaker) is CircuitState.CLOSED


def test_half_open_lets_one_probe_through_at_a_time(fake_time: FakeTime) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5.0, monotonic=fake_time.monotonic)
    breaker.before_call()
    breaker.record_failure()
    fake_time.advance(5.0)

    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the probe is out
    breaker.record_success()
    breaker.before_call()
    assert state_of(breaker) is CircuitState.CLOSED


# -- the policy itself -------------------------------------------------------------------------------


def test_backoff_is_jittered_under_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    rng = random.Random(7)

    delays = [[policy.delay(retry, None, rng) for retry in (1, 2, 3, 4)] for _ in range(200)]

    for per_retry, cap in zip(zip(*delays, strict=True), [1.0, 2.0, 4.0, 4.0], strict=True):
        assert all(d is not None and 0 <= d <= cap for d in per_retry)
        assert len(set(per_retry)) > 100  # jitter: clients that failed together spread out


def test_retry_after_is_a_floor_and_has_a_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.1, max_retry_after=10.0)
    rng = random.Random(1)

    assert policy.delay(1, 3.0, rng) == 3.0
    assert policy.delay(1, 10.0, rng) == 10.0
    assert policy.delay(1, 10.5, rng) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 0 ", 0.0),
        ("Tue, 03 Mar 2026 13:02:30 GMT", 30.0),
        ("Tue, 03 Mar 2026 13:01:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("-1", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=datetime(2026, 3, 3, 13, 2, tzinfo=UTC)) == seconds


def test_policy_and_breaker_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base_delay=-1)
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
