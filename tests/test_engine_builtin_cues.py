"""The built-in engine carries its plan: every musical cue moves the right way over the whole circle.

Gabrielsson & Lindström (2010) and Eerola et al. (2013): arousal is carried by tempo, loudness,
density, articulation and brightness; valence by mode, register and consonance. Checked on the
feature mapping, on the composer's notes, and acoustically on rendered clips.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from musicmed_stream.engines.base import Continuation
from musicmed_stream.engines.builtin import BuiltinEngine
from musicmed_stream.engines.builtin.composer import DRUM_NOTES
from musicmed_stream.engines.builtin.mapping import MODE_ORDER, STYLES, features_for, resolve_style
from musicmed_stream.evaluation.features import extract_features
from musicmed_stream.planner.types import Segment

SR = 22050
GRID = np.linspace(-1.0, 1.0, 21)
KIT_GENRES = sorted(name for name, style in STYLES.items() if style.drums != "none")


@pytest.fixture(scope="module")
def engine() -> BuiltinEngine:
    return BuiltinEngine(sample_rate=SR)


def seg(valence, arousal, instrument="piano", genre="pop", duration=12.0, index=0) -> Segment:
    return Segment(index, index * duration, duration, valence, arousal, "calm", "calm", instrument, genre)


def nondecreasing(values) -> bool:
    return all(b >= a - 1e-9 for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("valence", [-0.8, 0.0, 0.8])
@pytest.mark.parametrize("tempo_factor", sorted({s.tempo_factor for s in STYLES.values()}))
def test_arousal_cues_are_monotonic(valence, tempo_factor):
    rows = [features_for(valence, a, tempo_factor) for a in GRID]
    for rising in ("tempo_bpm", "velocity", "density", "brightness_hz", "percussion", "groove"):
        assert nondecreasing([getattr(r, rising) for r in rows]), rising
    for falling in ("articulation", "reverb_room", "reverb_wet"):
        assert nondecreasing([-getattr(r, falling) for r in rows]), falling
    assert rows[-1].tempo_bpm > 2.0 * rows[0].tempo_bpm  # the whole range, not a nudge


@pytest.mark.parametrize("arousal", [-0.8, 0.0, 0.8])
def test_valence_cues_are_monotonic(arousal):
    rows = [features_for(v, arousal) for v in GRID]
    assert nondecreasing([MODE_ORDER.index(r.mode) for r in rows])  # phrygian .. lydian
    assert rows[0].mode in ("phrygian", "aeolian") and rows[-1].mode in ("ionian", "lydian")
    assert nondecreasing([r.register for r in rows])
    assert nondecreasing([-r.tension for r in rows])  # darker music is more dissonant


@pytest.mark.parametrize("genre", sorted(STYLES))
def test_tempo_spans_slow_to_fast_in_every_genre(genre):
    factor = STYLES[genre].tempo_factor
    for valence in (-0.8, 0.0, 0.8):
        assert features_for(valence, -0.8, factor).tempo_bpm <= 65.0
        assert features_for(valence, 0.8, factor).tempo_bpm >= 125.0


def lead_notes(clip) -> list[dict]:
    return [n for n in clip.notes if n["channel"] == 0]


def drum_notes(clip, name: str) -> list[dict]:
    return [n for n in clip.notes if n["channel"] == 9 and n["pitch"] == DRUM_NOTES[name]]


def test_composed_notes_follow_arousal(engine):
    levels = [-0.8, -0.4, 0.0, 0.4, 0.8]
    rate, velocity, length, drums = [], [], [], []
    for arousal in levels:
        clips = [engine.generate(seg(0.3, arousal, duration=20.0), None, seed=s) for s in range(3)]
        rate.append(np.mean([len(c.notes) / 20.0 for c in clips]))
        velocity.append(np.mean([n["velocity"] for c in clips for n in lead_notes(c)]))
        length.append(np.mean([n["end"] - n["start"] for c in clips for n in lead_notes(c)]))
        drums.append(np.mean([sum(n["channel"] == 9 for n in c.notes) for c in clips]))
    assert nondecreasing(rate) and rate[-1] > 3 * rate[0]  # sparse -> dense
    assert nondecreasing(velocity) and velocity[-1] - velocity[0] > 25  # soft -> loud
    assert nondecreasing([-x for x in length])  # long notes -> short notes
    assert drums[0] == 0 and nondecreasing(drums)  # no kit in calm music


@pytest.mark.parametrize("genre", sorted(STYLES))
def test_no_drums_at_low_arousal(engine, genre):
    clip = engine.generate(seg(0.0, -0.8, "piano", genre, 10.0), None, seed=5)
    assert not [n for n in clip.notes if n["channel"] == 9]


@pytest.mark.parametrize("genre", KIT_GENRES)
def test_a_clear_kit_with_a_backbeat_at_high_arousal(engine, genre):
    clip = engine.generate(seg(0.4, 0.8, "piano", genre, 16.0), None, seed=6)
    bar = 4 * 60.0 / clip.state["tempo"]
    bars = 16.0 / bar
    kicks = drum_notes(clip, "kick")
    backbeat = drum_notes(clip, "snare") + drum_notes(clip, "clap")
    hats = drum_notes(clip, "hat") + drum_notes(clip, "openhat")
    assert len(kicks) >= 0.9 * bars
    assert len(hats) >= 3.5 * bars
    # Snare or clap on beats 2 and 4 of each bar: about every half bar, offset from the kicks.
    snare_times = np.array(sorted({round(n["start"], 2) for n in drum_notes(clip, "snare")}))
    assert len(snare_times) >= 1.8 * bars and len(backbeat) >= len(snare_times)
    gaps = np.diff(snare_times)
    assert np.median(gaps) == pytest.approx(bar / 2, rel=0.1)
    if STYLES[genre].drums != "four":  # four on the floor: a kick on every beat, the clap with it
        kick_times = np.array([n["start"] for n in kicks])
        nearest_kick = np.min(np.abs(snare_times[:, None] - kick_times[None, :]), axis=1)
        assert np.median(nearest_kick) > 0.15 * bar  # the snare falls between the kicks


@pytest.mark.parametrize("tag", ["drums", "beat", "drummachine"])
def test_a_drum_prompt_has_a_kit_even_in_a_genre_without_one(engine, tag):
    assert resolve_style("ambient").drums == "none"
    clip = engine.generate(seg(0.2, 0.3, tag, "ambient", 8.0), None, seed=2)
    assert len([n for n in clip.notes if n["channel"] == 9]) >= 8


def session(engine, points, instrument="piano", genre="pop", seconds=12.0):
    """Clips along ``points`` (valence, arousal), each continuing the last, as a session would."""
    previous, clips = None, []
    for i, (v, a) in enumerate(points):
        clip = engine.generate(seg(v, a, instrument, genre, seconds, i), previous, seed=100 + i)
        clips.append(clip)
        previous = Continuation(clip.audio[-SR:], SR, clip.state)
    return clips


def test_calm_to_excited_session_rises_in_tempo_density_brightness_and_loudness(engine):
    points = [(0.6, a) for a in np.linspace(-0.8, 0.8, 6)]
    clips = session(engine, points, "piano", "pop")
    feats = [extract_features(c.audio, SR) for c in clips]
    steps = range(len(feats))
    tempo = [c.state["tempo"] for c in clips]  # what was played; librosa below hears it
    assert nondecreasing(tempo) and tempo[-1] >= 1.6 * tempo[0]
    heard = [f.tempo_bpm for f in feats]
    assert heard[-1] > heard[0] * 1.3
    for name in ("onset_rate", "centroid_hz", "loudness_lufs"):
        values = [getattr(f, name) for f in feats]
        assert spearmanr(steps, values).statistic >= 0.8, (name, values)
        assert values[-1] > values[0], name


def test_sad_to_happy_session_moves_from_minor_to_major(engine):
    points = [(v, 0.0) for v in np.linspace(-0.85, 0.85, 7)]
    clips = session(engine, points, "piano", "classical")
    modes = [c.state["mode"] for c in clips]
    assert modes[0] in ("phrygian", "aeolian") and modes[-1] in ("ionian", "lydian")
    heard = [extract_features(c.audio, SR).mode for c in clips]
    assert heard[0] < 0 < heard[-1]  # the key estimate hears minor first, major last
    assert spearmanr(range(len(heard)), heard).statistic >= 0.6
