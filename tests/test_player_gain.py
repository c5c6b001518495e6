"""Gain ramps: linear, block-size independent, settle exactly on the target."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from musicmed_stream.player.gain import GainRamp


def gains(ramp: GainRamp, frames: int, sizes: list[int]) -> np.ndarray:
    out, done, i = [], 0, 0
    while done < frames:
        block = np.ones((min(sizes[i % len(sizes)], frames - done), 2), np.float32)
        ramp.apply(block)
        out.append(block[:, 0])
        done += len(block)
        i += 1
    return np.concatenate(out)


@given(sizes=st.lists(st.integers(1, 70), min_size=1, max_size=5), target=st.sampled_from([0.0, 0.25, 0.5]))
def test_a_ramp_is_linear_whatever_the_block_sizes(sizes: list[int], target: float) -> None:
    ramp = GainRamp(1.0, ramp_frames=100)
    ramp.set(target)
    got = gains(ramp, 200, sizes)
    steps = round((1.0 - target) * 100)
    expected = np.concatenate([1.0 - np.arange(1, steps + 1) / 100, np.full(200 - steps, target)])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert ramp.settled and ramp.current == target


def test_ramping_up_and_a_settled_unity_gain_leaves_audio_untouched() -> None:
    ramp = GainRamp(0.0, ramp_frames=10)
    ramp.set(1.0)
    np.testing.assert_allclose(gains(ramp, 20, [4]), np.minimum(np.arange(1, 21) / 10, 1.0), atol=1e-6)
    block = np.random.default_rng(0).uniform(-1, 1, (16, 2)).astype(np.float32)
    copy = block.copy()
    ramp.apply(block)
    np.testing.assert_array_equal(block, copy)
