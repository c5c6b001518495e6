"""The playback timeline: crossfades that keep their shape whatever the block size, and moves."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.chain import equal_power_gains
from musicmed_stream.player.timeline import Label, Timeline


def ones(frames: int, value: float = 1.0) -> np.ndarray:
    return np.full((frames, 1), value, dtype=np.float32)


def render_all(timeline: Timeline, frames: int, sizes: list[int]) -> np.ndarray:
    out, done, i = [], 0, 0
    while done < frames:
        block = np.empty((min(sizes[i % len(sizes)], frames - done), 1), np.float32)
        timeline.render(block)
        out.append(block)
        done += len(block)
        i += 1
    return np.concatenate(out)


def test_append_crossfades_with_the_chains_equal_power_curves() -> None:
    timeline = Timeline(1)
    timeline.append(ones(100, 1.0), overlap=0)
    second = timeline.append(ones(100, 2.0), overlap=20)
    assert second.start == 80
    mixed = render_all(timeline, 180, [64])[:, 0]
    fade_out, fade_in = (g[:, 0] for g in equal_power_gains(20))
    np.testing.assert_allclose(mixed[:80], 1.0)
    np.testing.assert_allclose(mixed[80:100], 1.0 * fade_out + 2.0 * fade_in, rtol=1e-6)
    np.testing.assert_allclose(mixed[100:], 2.0)
    assert timeline.voices == [] and timeline.ahead() == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 97), min_size=1, max_size=8),
    lengths=st.lists(st.integers(10, 300), min_size=1, max_size=4),
    cut_at=st.integers(0, 400),
)
def test_output_does_not_depend_on_block_sizes(sizes: list[int], lengths: list[int], cut_at: int) -> None:
    def build() -> Timeline:
        timeline = Timeline(1)
        for n, length in enumerate(lengths):
            rng = np.random.default_rng(n)
            timeline.append(rng.uniform(-1, 1, (length, 1)).astype(np.float32), overlap=length // 4)
        return timeline

    total = sum(lengths) + 50
    reference = render_all(build(), total, [total])
    np.testing.assert_array_equal(render_all(build(), total, sizes), reference)


def test_cut_in_fades_the_current_voice_out_and_drops_what_had_not_started() -> None:
    timeline = Timeline(1)
    timeline.append(ones(1000, 1.0), overlap=0)
    timeline.append(ones(1000, 5.0), overlap=250)  # scheduled at 750, not started yet
    render_all(timeline, 300, [100])
    new = timeline.cut_in(ones(1000, 2.0), fade=100, label=Label("clip", 7))
    assert new.start == 300
    assert [v.label.index for v in timeline.voices] == [-1, 7]
    mixed = render_all(timeline, 1000, [33])[:, 0]
    fade_out, fade_in = (g[:, 0] for g in equal_power_gains(100))
    np.testing.assert_allclose(mixed[:100], fade_out + 2.0 * fade_in, rtol=1e-6)
    np.testing.assert_allclose(mixed[100:], 2.0)


def test_drop_future_restores_the_voice_that_was_to_fade_into_it() -> None:
    timeline = Timeline(1)
    first = timeline.append(ones(400), overlap=0)
    timeline.append(ones(400, 3.0), overlap=100)
    render_all(timeline, 100, [100])
    dropped = timeline.drop_future()
    assert len(dropped) == 1 and first.end == 400 and first.fade_outs == []
    np.testing.assert_allclose(render_all(timeline, 400, [128])[:300, 0], 1.0)


def test_a_second_fade_during_a_fade_stays_continuous() -> None:
    timeline = Timeline(1)
    timeline.append(ones(1000), overlap=0)
    timeline.fade_tail(400)  # fades over 600..1000
    render_all(timeline, 700, [700])
    timeline.fade_all(100)  # and faster from 700
    out = render_all(timeline, 300, [7])[:, 0]
    assert np.all(np.diff(out) <= 0), "the gain only goes down"
    assert out[0] < 1.0 and out[99] < 0.05 and not out[100:].any()


def test_a_clip_in_pieces_plays_as_one_and_crossfades_as_one() -> None:
    whole, pieces = Timeline(1), Timeline(1)
    rng = np.random.default_rng(3)
    first = rng.uniform(-1, 1, (300, 1)).astype(np.float32)
    second = rng.uniform(-1, 1, (200, 1)).astype(np.float32)
    whole.append(first, overlap=0)
    pieces.append(first[:120], overlap=0)
    pieces.append(first[120:250], overlap=0, label=Label("piece"))
    pieces.append(first[250:], overlap=0, label=Label("piece"))
    for timeline in (whole, pieces):
        timeline.append(second, overlap=80)  # fades the last 80 frames: across two pieces
    np.testing.assert_array_equal(render_all(pieces, 500, [64]), render_all(whole, 500, [64]))
