"""The ring buffer between the block path and the sink preserves the sample stream."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.player.ring import RingBuffer


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 64),
    channels=st.integers(1, 3),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 100)), max_size=60),
)
def test_arbitrary_push_pull_sizes_preserve_the_stream(capacity: int, channels: int, ops: list) -> None:
    ring = RingBuffer(capacity, channels)
    source = np.arange(100 * 60 * channels, dtype=np.float32).reshape(-1, channels)
    pushed = 0
    pulled: list[np.ndarray] = []
    for is_write, size in ops:
        if is_write:
            accepted = ring.write(source[pushed : pushed + size])
            assert accepted == min(size, capacity - (pushed - ring.frames_read))
            pushed += accepted
        else:
            out = np.full((size, channels), -1.0, dtype=np.float32)
            got = ring.read_into(out)
            assert got == min(size, pushed - sum(len(p) for p in pulled))
            assert np.all(out[got:] == -1.0), "frames past the count are left alone"
            pulled.append(out[:got].copy())
        assert ring.available() + ring.space() == capacity
    flat = np.concatenate(pulled) if pulled else np.zeros((0, channels), np.float32)
    np.testing.assert_array_equal(flat, source[: len(flat)])
    assert ring.frames_written == pushed
    assert ring.frames_read == len(flat)


def test_clear_drops_unread_frames_and_counts_them_as_read() -> None:
    ring = RingBuffer(8, 2)
    ring.write(np.ones((5, 2), np.float32))
    assert ring.clear() == 5
    assert ring.available() == 0
    assert ring.frames_read == 5
    out = np.zeros((4, 2), np.float32)
    assert ring.read_into(out) == 0
