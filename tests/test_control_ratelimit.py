"""The per-client token bucket: never more than the burst plus what the rate refills."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from musicmed_stream.control.ratelimit import TokenBucket

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
