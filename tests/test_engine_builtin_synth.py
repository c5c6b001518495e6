"""The built-in synthesizer's voices: tuning, band limits, click-free envelopes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from musicmed_stream.engines.builtin.synth import (
    VOICES,
    TemplateCache,
    add_note,
    build_template,
    drum_sample,
    midi_to_hz,
)

SR = 44100


def estimate_f0(x: np.ndarray, sr: int, expected: float, window: str = "blackmanharris") -> float:
    """Power-weighted mean frequency of the fundamental's spectral peak (zero-padded FFT).

    The mean, not the maximum, is the pitch of an ensemble of detuned copies or of a vibrato.
    """
    n = 1 << 21
    spectrum = np.abs(np.fft.rfft(x * signal.get_window(window, x.size), n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / sr)
    band = (freqs > expected * 2 ** (-0.5 / 12)) & (freqs < expected * 2 ** (0.5 / 12))
    return float(np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))


def render(voice: str, pitch: int, seconds: float, sr: int = SR) -> np.ndarray:
    bus = np.zeros(round((seconds + 2.0) * sr), dtype=np.float32)
    add_note(bus, build_template(voice, pitch, sr), VOICES[voice], 0, round(seconds * sr), 0.5, sr)
    return bus


@pytest.mark.parametrize("voice", ["piano", "nylon", "strings", "flute", "organ", "choir", "bell", "bass"])
@pytest.mark.parametrize("pitch", [45, 69, 76])
def test_notes_are_in_equal_temperament(voice, pitch):
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    note = render(voice, pitch, 5.0)
    start = round(0.5 * SR)
    template = build_template(voice, pitch, SR)
    if template.loop:
        # A held note repeats its loop: over exactly one loop length every partial of the
        # detuned ensemble falls on its own bin, so a rectangular window measures their mean.
        f0 = estimate_f0(note[start : start + template.wave.size], SR, expected, "boxcar")
    else:
        f0 = estimate_f0(note[start : start + SR], SR, expected)
    assert abs(1200 * np.log2(f0 / expected)) < 2.0


def test_midi_to_hz_reference():
    assert midi_to_hz(69) == 440.0
    assert midi_to_hz(81) == pytest.approx(880.0)


@pytest.mark.parametrize("voice", sorted(VOICES))
def test_voices_are_band_limited_and_normalized(voice):
    wave = build_template(voice, 96, SR).wave  # a high note: the most partials near Nyquist
    assert np.all(np.isfinite(wave)) and 0.1 < np.max(np.abs(wave)) <= 1.0
    power = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / SR)
    above = power[freqs > 0.46 * SR].sum() / power.sum()
    # Loops hold no partial above 0.45 * SR at all; decaying voices leak a little through their
    # sharp attack (the spectrum of an exponential onset), still 50 dB down.
    assert above < (1e-5 if VOICES[voice].kind == "decay" else 1e-8)


@pytest.mark.parametrize("voice", ["piano", "strings", "pad", "flute", "harp"])
def test_notes_start_and_end_without_clicks(voice):
    note = render(voice, 60, 0.8)
    assert abs(note[0]) < 1e-3
    nonzero = np.flatnonzero(note)
    assert nonzero.size and abs(note[nonzero[-1]]) < 2e-3  # released to silence, not cut
    # The largest step anywhere is small compared with the note's peak (no discontinuity).
    assert np.max(np.abs(np.diff(note))) < 0.25 * np.max(np.abs(note))


def test_note_started_before_the_clip_is_cut_in_not_shifted():
    template = build_template("strings", 60, SR)
    whole = np.zeros(SR * 3, dtype=np.float32)
    add_note(whole, template, VOICES["strings"], 0, SR * 2, 1.0, SR)
    late = np.zeros(SR * 2, dtype=np.float32)
    add_note(late, template, VOICES["strings"], -SR, SR * 2, 1.0, SR)
    assert np.array_equal(late, whole[SR : 3 * SR])


def test_template_cache_returns_the_same_waveform_as_a_fresh_build():
    cache = TemplateCache(max_bytes=1)  # evicts all but the newest entry
    first = cache.get("piano", 60, SR).wave
    cache.get("flute", 72, SR)
    again = cache.get("piano", 60, SR).wave
    assert np.array_equal(first, again)
    assert np.array_equal(first, build_template("piano", 60, SR).wave)


@pytest.mark.parametrize("name", ["kick", "snare", "brush", "hat", "shaker", "rim"])
def test_drums_are_finite_and_fade_out(name):
    sample = drum_sample(name, SR)
    assert np.all(np.isfinite(sample)) and np.max(np.abs(sample)) == pytest.approx(1.0, abs=1e-6)
    assert abs(sample[-1]) < 1e-3
