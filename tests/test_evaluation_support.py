"""Synthetic music and run folders for the evaluation tests (and checks that they are what they claim)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from musicmed_stream.audio_io import write_audio
from musicmed_stream.chain import ChainConfig
from musicmed_stream.planner.types import Plan
from musicmed_stream.render import render_clips

SR = 22050


def synth_music(
    seconds: float,
    bpm: float,
    amplitude: float,
    bright: bool,
    major: bool,
    sr: int = SR,
    seed: int = 0,
) -> np.ndarray:
    """Stereo chord-and-melody music with smooth note envelopes (no clicks), float32.

    Bright music has many strong harmonics, dark music few and weak ones; major uses the major
    third and sixth, minor the minor ones; ``bpm`` sets the note rate.
    """
    rng = np.random.default_rng(seed)
    third, sixth, seventh = (4, 9, 11) if major else (3, 8, 10)
    scale = np.array([0, 2, third, 5, 7, sixth, seventh])
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11 if major else 10, 14), (0, third, 7)]
    step = 60.0 / bpm
    out = np.zeros(int(seconds * sr))
    n = np.arange(int(step * sr)) / sr
    envelope = np.minimum(n / 0.01, 1.0) * np.exp(-3.0 * n) * np.clip((step - n) / 0.03, 0.0, 1.0)
    # Bright: eight harmonics falling as 1/h**1.25 (a mellow brass-like tone; a full 1/h sawtooth's
    # steep edges read as clicks to the detector); dark: two, falling steeply.
    harmonics = np.arange(1, 9 if bright else 3)
    weights = 1.0 / harmonics ** (1.25 if bright else 2.5)
    t, k = 0.0, 0
    while t + step <= seconds:
        start = int(t * sr)
        chord = chords[(k // 4) % len(chords)]
        pitches = [48 + chord[0], 60 + chord[1], 60 + chord[2], 72 + scale[rng.integers(len(scale))]]
        for pitch in pitches:
            f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
            active = harmonics[f0 * harmonics < 0.45 * sr]
            tone = (weights[: active.size, None] * np.sin(2 * np.pi * f0 * active[:, None] * n)).sum(axis=0)
            out[start : start + n.size] += envelope * tone
        t += step
        k += 1
    out *= amplitude / max(np.max(np.abs(out)), 1e-9)
    return np.stack([out, out], axis=1).astype(np.float32)


def synth_chords(chords: list[list[int]], seconds_per_chord: float, sr: int = SR) -> np.ndarray:
    """Mono block chords with harmonic tones, float32; each chord is a list of MIDI pitches.

    Every chord sounds for ``seconds_per_chord`` with a smooth attack and release; the first pitch
    of a chord is its bass note.
    """
    n = np.arange(int(seconds_per_chord * sr)) / sr
    envelope = np.minimum(n / 0.02, 1.0) * np.clip((seconds_per_chord - n) / 0.05, 0.0, 1.0)
    harmonics = np.arange(1, 7)
    out = []
    for chord in chords:
        block = np.zeros(n.size)
        for pitch in chord:
            f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
            block += (np.sin(2 * np.pi * f0 * harmonics[:, None] * n) / harmonics[:, None] ** 1.5).sum(axis=0)
        out.append(envelope * block)
    audio = np.concatenate(out)
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


def music_for(valence: float, arousal: float, seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Music following a circumplex point: tempo, loudness, brightness from arousal; mode from valence."""
    return synth_music(
        seconds,
        bpm=90 + 50 * arousal,
        amplitude=0.3 * 10 ** (arousal * 0.75),
        bright=arousal > 0,
        major=valence >= 0,
        sr=sr,
        seed=seed,
    )


def make_render_folder(folder: Path, plan: Plan, sr: int = SR) -> Path:
    """A folder in the render's layout (plan.json, clips/, session.wav, render.json) with synthetic music.

    The session is the synthetic clips through the real audio chain, as the render makes it.
    """
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    clips = [music_for(s.valence, s.arousal, s.duration_s, sr, seed=s.index) for s in plan.segments]
    for segment, clip in zip(plan.segments, clips, strict=True):
        write_audio(folder / "clips" / f"clip_{segment.index:03d}.wav", clip, sr)
    session = render_clips(clips, sr, ChainConfig())
    write_audio(folder / "session.wav", session, sr)
    (folder / "plan.json").write_text(plan.to_json())
    audio_s = session.shape[0] / sr
    # The render's log format: 50x real time end to end, the engine alone 100x.
    info = {
        "engine": "synthetic",
        "duration_s": audio_s,
        "timings_s": {
            "generate": audio_s / 100,
            "chain": audio_s / 200,
            "write": audio_s / 200,
            "total": audio_s / 50,
        },
        "realtime_factor": 50.0,
        "generation_s": [audio_s / 100 / len(clips)] * len(clips),
        "clips_resumed": 0,
    }
    (folder / "render.json").write_text(json.dumps(info))
    return folder


def test_synth_music_is_bounded_and_starts_and_ends_silent():
    audio = synth_music(3.0, bpm=120, amplitude=0.5, bright=True, major=True)
    assert np.max(np.abs(audio)) == pytest.approx(0.5, abs=1e-6)
    # Every note envelope starts and ends at zero, so the clip does too.
    assert np.all(np.abs(audio[0]) < 1e-6)
    assert np.all(np.abs(audio[-1]) < 1e-3)


def test_synth_chords_plays_each_chord_in_turn():
    # One second per chord: the strongest frequency of each second is a partial of its chord.
    audio = synth_chords([[45, 57, 60, 64], [41, 57, 62, 65]], 1.0)
    assert audio.shape == (2 * SR,) and np.max(np.abs(audio)) == pytest.approx(0.5, abs=1e-6)
    for second, chord in enumerate([[45, 57, 60, 64], [41, 57, 62, 65]]):
        spectrum = np.abs(np.fft.rfft(audio[second * SR : (second + 1) * SR]))
        peak_hz = float(np.argmax(spectrum))  # a 1-s window: 1 Hz per bin
        partials = [440.0 * 2.0 ** ((p - 69) / 12) * h for p in chord for h in range(1, 7)]
        assert min(abs(peak_hz - f) for f in partials) < 2.0


def test_music_for_is_louder_at_high_arousal():
    meter = pyloudnorm.Meter(SR)
    loud = meter.integrated_loudness(music_for(0.5, 0.8, 4.0))
    soft = meter.integrated_loudness(music_for(0.5, -0.8, 4.0))
    assert loud > soft + 6


def render_builtin(folder: Path, plan: Plan) -> Path:
    """Render ``plan`` with the built-in engine into ``folder`` in the render's layout.

    Uses the render library (``musicmed_stream.render.render_session``) when it is there;
    otherwise builds the same files from the engine and the chain directly.
    """
    from musicmed_stream.engines.builtin import BuiltinEngine

    engine = BuiltinEngine()
    try:
        from musicmed_stream.render import render_session
    except ImportError:
        render_session = None
    if render_session is not None:
        render_session(plan, engine, folder, ChainConfig())
        return folder
    from musicmed_stream.chain import conditioning_tail
    from musicmed_stream.engines.base import Continuation, clip_seed

    (folder / "clips").mkdir(parents=True, exist_ok=True)
    previous, clips = None, []
    for segment in plan.segments:
        clip = engine.generate(segment, previous, seed=clip_seed(plan.settings.seed, segment.index))
        write_audio(folder / "clips" / f"clip_{segment.index:03d}.wav", clip.audio, clip.sample_rate)
        tail = conditioning_tail(clip.audio, clip.sample_rate, ChainConfig())
        previous = Continuation(tail, clip.sample_rate, clip.state)
        clips.append(clip.audio)
    write_audio(
        folder / "session.wav", render_clips(clips, engine.sample_rate, ChainConfig()), engine.sample_rate
    )
    (folder / "plan.json").write_text(plan.to_json())
    return folder
