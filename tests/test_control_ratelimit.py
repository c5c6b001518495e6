"""The per-client token bucket (never more than the burst plus what the rate refills), and the
per-address backoff after wrong tokens (at most one guess per backoff, doubling, bounded)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from musicmed_stream.control.ratelimit import AuthBackoff, TokenBucket

rates = st.floats(min_value=0.5, max_value=100)
capacities = st.floats(min_value=1, max_value=50)
gaps = st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200)


@given(rate=rates, capacity=capacities, steps=gaps)
def test_accepted_messages_never_exceed_burst_plus_refill(
    rate: float, capacity: float, steps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, capacity=capacity, now=0.0)
    times = list(itertools.accumulate(steps))
    accepted = [t for t in times if bucket.take(t)]
    # Any window [a, b] of arrival times: at most capacity + rate * (b - a) accepted in it.
    for i, start in enumerate(accepted):
        for j in range(i, len(accepted)):
            assert j - i + 1 <= capacity + rate * (accepted[j] - start) + 1e-6


@given(rate=rates, capacity=capacities, n=st.integers(1, 100))
def test_a_client_within_the_rate_is_never_refused(rate: float, capacity: float, n: int) -> None:
    bucket = TokenBucket(rate=rate, capacity=capacity, now=0.0)
    assert all(bucket.take(i / rate) for i in range(n))


@given(rate=rates, capacity=st.integers(min_value=1, max_value=50))
def test_a_burst_gets_exactly_the_capacity(rate: float, capacity: int) -> None:
    # A whole-number burst: a fractional one is blurred by the rounding tolerance of ``take``.
    bucket = TokenBucket(rate=rate, capacity=float(capacity), now=0.0)
    taken = sum(bucket.take(0.0) for _ in range(capacity + 5))
    assert taken == capacity


def test_a_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(rate=1.0, capacity=1.0, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, 5.0), (-1.0, 5.0), (1.0, 0.5), (float("nan"), 2.0)])
def test_invalid_parameters_are_refused(rate: float, capacity: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=rate, capacity=capacity, now=0.0)


def test_wrong_tokens_back_off_exponentially_after_the_free_ones() -> None:
    backoff = AuthBackoff(base=1.0, cap=60.0, free_failures=3)
    assert [backoff.failure("10.0.0.1", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert backoff.retry_after("10.0.0.1", 0.0) == 0.0
    now, delays = 0.0, []
    for _ in range(9):
        delays.append(backoff.failure("10.0.0.1", now))
        assert backoff.retry_after("10.0.0.1", now) == delays[-1]
        assert backoff.retry_after("10.0.0.1", now + delays[-1] - 0.01) > 0, "still refused just before"
        now += delays[-1]
        assert backoff.retry_after("10.0.0.1", now) == 0.0, "free again when it ends"
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.retry_after("10.0.0.2", now) == 0.0, "another address is not slowed"


def test_a_right_token_clears_the_address() -> None:
    backoff = AuthBackoff(base=0.5, free_failures=0)
    assert backoff.failure("::1", 0.0) == 0.5
    assert backoff.failure("::1", 0.5) == 1.0
    backoff.success("::1")
    assert backoff.failures("::1") == 0 and backoff.retry_after("::1", 1.5) == 0.0
    assert backoff.failure("::1", 2.0) == 0.5, "starts again from the first backoff"


def test_a_long_quiet_spell_forgets_the_address() -> None:
    backoff = AuthBackoff(base=1.0, cap=4.0, free_failures=1, forget_after=100.0)
    for t in range(4):
        backoff.failure("a", float(t * 10))
    assert backoff.failures("a") == 4
    assert backoff.failure("a", 30.0 + 100.0 + 1) == 0.0, "a fresh start: the free failure again"
    assert backoff.failures("a") == 1


def test_the_table_is_bounded_oldest_failure_dropped_first() -> None:
    backoff = AuthBackoff(free_failures=0, max_addresses=3)
    for i, address in enumerate("abcd"):
        backoff.failure(address, float(i) / 100)
    assert len(backoff) == 3
    assert backoff.failures("a") == 0 and backoff.failures("d") == 1
    backoff.failure("b", 0.1)  # b is now the newest: c goes next
    backoff.failure("e", 0.2)
    assert backoff.failures("c") == 0 and {backoff.failures(x) for x in "bde"} == {1, 2}


@given(
    base=st.floats(min_value=0.01, max_value=5),
    free=st.integers(0, 4),
    gaps=st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=100),
)
def test_an_attacker_gets_one_guess_per_backoff(base: float, free: int, gaps: list[float]) -> None:
    """Whatever the timing, checked guesses (all wrong) are spaced by at least the backoff each
    one started: base, 2 base, 4 base, ... up to the cap."""
    backoff = AuthBackoff(base=base, cap=60.0, free_failures=free)
    checked: list[tuple[float, float]] = []
    for now in itertools.accumulate(gaps):
        if backoff.retry_after("x", now) == 0.0:
            checked.append((now, backoff.failure("x", now)))
    for (before, delay), (after, _) in itertools.pairwise(checked):
        assert after - before >= delay - 1e-9
    assert [delay for _, delay in checked] == [
        0.0 if i < free else min(60.0, base * 2 ** (i - free)) for i in range(len(checked))
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"base": 0.0},
        {"base": 2.0, "cap": 1.0},
        {"free_failures": -1},
        {"max_addresses": 0},
        {"forget_after": 1.0},
    ],
)
def test_invalid_backoff_parameters_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        AuthBackoff(**options)  # type: ignore[arg-type]
