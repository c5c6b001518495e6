"""The built-in engine's stream: pieces as they are rendered, exactly the clip ``generate`` makes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from musicmed_stream.engines.base import Clip, Continuation, stream_clip
from musicmed_stream.engines.builtin import BuiltinEngine
from musicmed_stream.engines.builtin import soundfont as soundfont_module
from musicmed_stream.engines.builtin.mapping import features_for, resolve_style
from musicmed_stream.errors import ConfigError, GenerationCancelled
from musicmed_stream.planner.types import Segment

SR = 22050
PIECE_S = 0.7  # does not divide the clips: the last piece is shorter
DARK = (-0.6, -0.7, "strings", "soundtrack")  # low-pass far below the Nyquist: played at half rate
BRIGHT = (0.7, 0.8, "synthesizer", "pop")  # full rate, with drums


@pytest.fixture(scope="module", params=["auto", "none"], ids=["sampled", "synthetic"])
def engine(request) -> BuiltinEngine:
    return BuiltinEngine(sample_rate=SR, soundfont=request.param, stream_chunk_seconds=PIECE_S)


@pytest.fixture(scope="module")
def sampled() -> BuiltinEngine:
    engine = BuiltinEngine(sample_rate=SR, stream_chunk_seconds=PIECE_S)
    assert engine.soundfont is not None, "scripts/setup.sh installs FluidSynth and a GM SoundFont"
    return engine


def seg(valence: float, arousal: float, instrument: str, genre: str, duration: float = 6.0, index: int = 0):
    return Segment(index, index * duration, duration, valence, arousal, "calm", "calm", instrument, genre)


def collect(engine: BuiltinEngine, segment: Segment, previous: Continuation | None, seed: int):
    items = list(engine.stream(segment, previous, seed=seed))
    assert isinstance(items[-1], Clip) and not any(isinstance(i, Clip) for i in items[:-1])
    return items[:-1], items[-1]


@pytest.mark.parametrize("case", [DARK, BRIGHT], ids=["dark", "bright"])
def test_pieces_are_generate_sample_for_sample(engine, case):
    first = engine.generate(seg(*case), None, seed=1)
    # A first clip, and a clip that continues it (its replayed opening is turned in quadrature).
    for segment, previous in (
        (seg(*case), None),
        (seg(*case, index=1), Continuation(first.audio, SR, first.state)),
    ):
        pieces, clip = collect(engine, segment, previous, seed=segment.index + 1)
        expected = engine.generate(segment, previous, seed=segment.index + 1)
        n = engine.stream_chunk_frames
        assert n == round(PIECE_S * SR)
        assert all(p.dtype == np.float32 and p.shape[1] == 2 and not p.flags.writeable for p in pieces)
        assert [p.shape[0] for p in pieces[:-1]] == [n] * (len(pieces) - 1)
        assert 0 < pieces[-1].shape[0] < n  # 6 s is not a whole number of 0.7-s pieces
        np.testing.assert_array_equal(np.concatenate(pieces), expected.audio)
        for k, piece in enumerate(pieces):  # a saved clip sliced the same way gives the same pieces
            np.testing.assert_array_equal(piece, expected.audio[k * n : (k + 1) * n])
        np.testing.assert_array_equal(clip.audio, expected.audio)
        assert (clip.state, clip.notes, clip.info) == (expected.state, expected.notes, expected.info)
        assert np.abs(expected.audio).max() > 0.01


def test_the_dark_case_is_played_at_half_rate_and_resampled(sampled):
    style = resolve_style(DARK[3])
    cutoff = features_for(DARK[0], DARK[1], style.tempo_factor).brightness_hz
    assert sampled.soundfont.render_rate(cutoff) == SR // 2  # the soxr stream resampler is in the path
    bright = features_for(BRIGHT[0], BRIGHT[1], resolve_style(BRIGHT[3]).tempo_factor).brightness_hz
    assert sampled.soundfont.render_rate(min(bright, 0.45 * SR)) == SR


@pytest.mark.parametrize("case", [DARK, BRIGHT], ids=["dark", "bright"])
def test_the_samples_do_not_depend_on_the_piece_length(engine, case):
    # Every step carries its state from piece to piece: a daemon streaming 0.5-s pieces and a
    # render of whole clips make the same clips.
    voices = str(engine.soundfont.path) if engine.soundfont else "none"
    other = BuiltinEngine(sample_rate=SR, soundfont=voices, stream_chunk_seconds=5.0)
    a = engine.generate(seg(*case), None, seed=4)
    b = other.generate(seg(*case), None, seed=4)
    np.testing.assert_array_equal(a.audio, b.audio)
    follow = Continuation(a.audio, SR, a.state)
    np.testing.assert_array_equal(
        engine.generate(seg(*case, index=1), follow, seed=5).audio,
        other.generate(seg(*case, index=1), follow, seed=5).audio,
    )


def test_the_first_piece_comes_before_the_rest_is_played(sampled, monkeypatch):
    played: list[int] = []
    render = soundfont_module._ClipSynth.render

    def counting(self, n):
        played.append(n)
        return render(self, n)

    monkeypatch.setattr(soundfont_module._ClipSynth, "render", counting)
    segment = seg(*BRIGHT, duration=20.0)
    items = sampled.stream(segment, None, seed=2)
    next(items)
    assert 0 < sum(played) < 0.2 * 20.0 * SR  # FluidSynth has played about the first piece only
    rest = list(items)
    assert sum(played) >= 20.0 * SR and isinstance(rest[-1], Clip)


def test_a_stream_cancelled_after_its_first_piece_stops(engine):
    cancel = threading.Event()
    items = engine.stream(seg(*BRIGHT, duration=20.0), None, seed=3, cancel=cancel)
    assert next(items).shape[0] == engine.stream_chunk_frames
    cancel.set()
    with pytest.raises(GenerationCancelled):
        list(items)


def test_a_stream_closed_early_leaves_nothing_behind(sampled):
    items = sampled.stream(seg(*DARK), None, seed=6)
    next(items)
    items.close()  # the daemon abandons a clip on a re-target
    lock = sampled.soundfont._font.lock
    assert lock.acquire(blocking=False)  # the synthesizer was let go
    lock.release()
    fresh = BuiltinEngine(sample_rate=SR, stream_chunk_seconds=PIECE_S)
    np.testing.assert_array_equal(
        sampled.generate(seg(*DARK), None, seed=6).audio, fresh.generate(seg(*DARK), None, seed=6).audio
    )


def test_two_streams_at_once_make_their_own_clips(sampled):
    a, b = seg(*DARK), seg(*BRIGHT)
    streams = [sampled.stream(a, None, seed=7), sampled.stream(b, None, seed=8)]
    pieces: list[list[np.ndarray]] = [[], []]
    done = [False, False]
    while not all(done):  # one piece of each in turn: two synthesizers share the SoundFont
        for i, items in enumerate(streams):
            if not done[i]:
                item = next(items)
                done[i] = isinstance(item, Clip)
                if not done[i]:
                    pieces[i].append(item)
    np.testing.assert_array_equal(np.concatenate(pieces[0]), sampled.generate(a, None, seed=7).audio)
    np.testing.assert_array_equal(np.concatenate(pieces[1]), sampled.generate(b, None, seed=8).audio)


def test_stream_clip_uses_the_engines_stream(engine):
    items = list(stream_clip(engine, seg(*BRIGHT, duration=3.0), None, seed=9))
    assert len(items) == 1 + -(-3 * SR // engine.stream_chunk_frames)


@pytest.mark.parametrize("value", [0.0, -1.0, True, "2", 1e9])
def test_stream_chunk_seconds_is_checked(value):
    with pytest.raises(ConfigError, match="stream_chunk_seconds"):
        BuiltinEngine(sample_rate=SR, soundfont="none", stream_chunk_seconds=value)
