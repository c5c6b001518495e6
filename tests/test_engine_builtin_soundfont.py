"""Sampled GM instruments (FluidSynth + a GM SoundFont) and the synthetic-voice fallback."""

from __future__ import annotations

import builtins
import logging
import sys

import numpy as np
import pytest

from musicmed_stream.engines.base import Continuation
from musicmed_stream.engines.builtin import BuiltinEngine
from musicmed_stream.engines.builtin import engine as engine_module
from musicmed_stream.engines.builtin.mapping import INSTRUMENTS, STYLES, resolve_instrument
from musicmed_stream.engines.builtin.soundfont import find_soundfont, fluidsynth_unavailable_reason
from musicmed_stream.errors import ConfigError
from musicmed_stream.planner.types import Segment

SR = 22050
# scripts/setup.sh installs FluidSynth and the FluidR3 GM SoundFont: the sampled path is the product.
SOUNDFONT = find_soundfont()


@pytest.fixture(scope="module")
def sampled() -> BuiltinEngine:
    assert fluidsynth_unavailable_reason() is None, "scripts/setup.sh installs libfluidsynth3 + pyfluidsynth"
    assert SOUNDFONT is not None, "scripts/setup.sh installs fluid-soundfont-gm"
    return BuiltinEngine(sample_rate=SR)


def seg(valence=0.3, arousal=0.0, instrument="piano", genre="pop", duration=4.0, index=0) -> Segment:
    return Segment(index, index * duration, duration, valence, arousal, "calm", "calm", instrument, genre)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


@pytest.fixture
def hidden_fluidsynth(monkeypatch):
    """As on a machine where pyfluidsynth or libfluidsynth is missing: the import fails."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "fluidsynth":
            raise ImportError("Couldn't find the FluidSynth library.")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "fluidsynth", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(engine_module, "_VOICES_SAID", set())


def test_auto_uses_sampled_instruments(sampled):
    assert sampled.voices == f"soundfont:{SOUNDFONT.name}"
    clip = sampled.generate(seg(), None, seed=0)
    assert clip.info["voices"] == sampled.voices
    assert rms_db(clip.audio) > -40.0


def test_same_seed_same_samples_and_independent_of_what_came_before(sampled):
    a = sampled.generate(seg(0.5, 0.6, "synthesizer", "electronic"), None, seed=3)
    sampled.generate(seg(-0.5, -0.6, "cello", "classical"), None, seed=9)  # something else in between
    b = sampled.generate(seg(0.5, 0.6, "synthesizer", "electronic"), None, seed=3)
    assert np.array_equal(a.audio, b.audio)
    fresh = BuiltinEngine(sample_rate=SR).generate(seg(0.5, 0.6, "synthesizer", "electronic"), None, seed=3)
    assert np.array_equal(a.audio, fresh.audio)


def test_sampled_and_synthetic_voices_differ(sampled):
    synthetic = BuiltinEngine(sample_rate=SR, soundfont="none")
    assert synthetic.voices == "synth"
    a = sampled.generate(seg(), None, seed=1)
    b = synthetic.generate(seg(), None, seed=1)
    assert a.notes == b.notes  # the same composition ...
    assert not np.allclose(a.audio, b.audio, atol=1e-3)  # ... played by other instruments


@pytest.mark.parametrize("tag", [*sorted(INSTRUMENTS), "drums", "beat", "percussion"])
def test_every_instrument_tag_plays_its_gm_program(sampled, tag):
    _, instrument, percussive = resolve_instrument(tag)
    clip = sampled.generate(seg(0.2, 0.3, tag, "pop", 2.5), None, seed=1)
    assert clip.info["program"] == instrument.program
    assert instrument.program in {n["program"] for n in clip.notes if n["channel"] == 0}
    assert rms_db(clip.audio) > -45.0
    if percussive:  # a drum tag is heard as a kit
        assert any(n["channel"] == 9 for n in clip.notes)


def test_a_lead_instrument_alone_sounds(sampled):
    """Each GM program of the mapping exists in the SoundFont: a lone lead note is not silent."""
    renderer = sampled.soundfont
    from musicmed_stream.engines.builtin.composer import Note
    from musicmed_stream.engines.builtin.soundfont import layer_mix

    mix = {layer: layer_mix(1.0, 0.0, 0.0, 0.0) for layer in ("lead", "drums")}
    for program in sorted({i.program for i in INSTRUMENTS.values()}):
        note = Note(0.05, 0.6, 64 if program not in (32, 33, 38) else 40, 100, "lead", "piano", program)
        audio = renderer.render([note], SR, mix, (0.2, 0.0), 0)
        assert rms_db(audio) > -50.0, program
    for kit in sorted({s.kit for s in STYLES.values()}):
        kick = Note(0.05, 0.15, 36, 110, "drums", "kick", kit)
        assert rms_db(renderer.render([kick], SR, mix, (0.2, 0.0), kit)) > -50.0, kit


def test_clean_audio_no_clipping_no_clicks_at_clip_edges(sampled):
    previous = None
    peaks = []
    for i, (v, a, inst, genre) in enumerate(
        [(-0.6, -0.7, "piano", "classical"), (0.0, 0.2, "acousticguitar", "folk"), (0.7, 0.8, "synth", "pop")]
    ):
        clip = sampled.generate(seg(v, a, inst, genre, 6.0, i), previous, seed=i)
        audio = clip.audio
        assert np.all(np.isfinite(audio))
        peaks.append(float(np.max(np.abs(audio))))
        # Clip edges fade from and to silence (10 ms): the chain's crossfade starts cleanly.
        assert np.max(np.abs(audio[:8])) < 0.01 and np.max(np.abs(audio[-8:])) < 0.01
        previous = Continuation(audio[-SR:], SR, clip.state)
    assert max(peaks) <= 10 ** (-1 / 20) + 1e-6


def test_notes_that_began_in_the_previous_clip_are_not_attacked_again(sampled):
    first = sampled.generate(seg(0.2, -0.5, "strings", "soundtrack", 6.0), None, seed=2)
    state = first.state
    assert any(n["start"] < 6.0 * 0.75 < n["end"] for n in state["carry"]) or state["carry"]
    second = sampled.generate(
        seg(0.2, -0.5, "strings", "soundtrack", 6.0, 1), Continuation(first.audio[-SR:], SR, state), seed=3
    )
    # Strings that were already sounding play on from the first sample: no silent gap at the start.
    head = second.audio[round(0.02 * SR) : round(0.3 * SR)]
    assert rms_db(head) > -45.0


def test_fallback_to_synthetic_voices_without_fluidsynth_says_so(hidden_fluidsynth, caplog):
    assert fluidsynth_unavailable_reason() is not None
    with caplog.at_level(logging.INFO, logger="musicmed_stream.engines.builtin.engine"):
        engine = BuiltinEngine(sample_rate=SR)
        BuiltinEngine(sample_rate=SR)
    assert engine.voices == "synth" and engine.soundfont is None
    said = [r.getMessage() for r in caplog.records if "synthetic voices" in r.getMessage()]
    assert len(said) == 1 and "libfluidsynth3" in said[0]  # one line, with how to get the samples
    clip = engine.generate(seg(), None, seed=0)
    assert clip.info["voices"] == "synth" and rms_db(clip.audio) > -40.0


def test_explicit_soundfont_needs_fluidsynth(hidden_fluidsynth):
    with pytest.raises(ConfigError, match="FluidSynth"):
        BuiltinEngine(sample_rate=SR, soundfont=str(SOUNDFONT or "/usr/share/sounds/sf2/FluidR3_GM.sf2"))


def test_bad_soundfont_option_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        BuiltinEngine(soundfont=str(tmp_path / "missing.sf2"))
    with pytest.raises(ConfigError, match=r"\.sf2 or \.sf3"):
        BuiltinEngine(soundfont=str(tmp_path / "notes.txt"))
    corrupt = tmp_path / "corrupt.sf2"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00sfbk garbage")
    with pytest.raises(ConfigError, match="cannot load"):
        BuiltinEngine(soundfont=str(corrupt))
    with pytest.raises(ConfigError, match="soundfont"):
        BuiltinEngine(soundfont=3)  # type: ignore[arg-type]


def test_a_users_soundfont_path_is_used(sampled, tmp_path):
    own = tmp_path / "My GM.sf2"
    own.symlink_to(SOUNDFONT)
    engine = BuiltinEngine(sample_rate=SR, soundfont=str(own))
    assert engine.voices == f"soundfont:{SOUNDFONT.name}"  # resolved to the file itself
    assert rms_db(engine.generate(seg(), None, seed=0).audio) > -40.0
