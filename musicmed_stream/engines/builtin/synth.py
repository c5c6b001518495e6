"""Band-limited voice synthesis: per-pitch waveform templates and one-shot note rendering.

Every voice is built in the frequency domain: a partial is placed at an FFT bin and one inverse
real FFT yields a waveform that is exactly periodic over its length (a *loop*). Nothing above
``0.45 * sample_rate`` is ever placed, so no oscillator aliases. The loop length is a whole number
of fundamental periods, so the harmonic series sits exactly on bins and the pitch is exact to a
fraction of a cent; detuned copies and inharmonic partials fall on the nearest bin (0.3 Hz apart).

Two template kinds:

- sustained voices (strings, pads, organ, winds, voice) keep a loop that a note tiles for as long
  as it is held, shaped by an attack/release envelope;
- decaying voices (piano, plucked strings, bells, mallets) group their partials by decay time
  into a few loops, each multiplied by its exponential decay, summed into a finite one-shot.

Templates depend only on ``(voice, pitch, sample_rate)`` and are cached, so a note costs one
multiply-add over its samples.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import signal

LOOP_SECONDS = 3.0
NYQUIST_FRACTION = 0.45
# Decay-time grid (s) the partials of decaying voices are grouped on.
DECAY_GRID = np.geomspace(0.025, 12.0, 8)
CACHE_BYTES = 256 * 2**20


def midi_to_hz(pitch: float) -> float:
    """Equal temperament, A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


@dataclass(frozen=True)
class Partials:
    """A set of partials: frequency ratios to the fundamental, amplitudes, decay times (s)."""

    ratios: np.ndarray
    amps: np.ndarray
    decays: np.ndarray | None = None


@dataclass(frozen=True)
class VoiceModel:
    """How one synthetic instrument sounds.

    Attributes
    ----------
    kind : {"sustain", "decay"}
    attack_s, release_s : float
        Envelope times of a note (release is added after the note's end).
    vibrato_cents, vibrato_hz : float
        Vibrato baked into sustained loops (time-warped read of the loop).
    breath : float
        Level of band-limited breath noise (winds, voice).
    """

    name: str
    kind: str
    attack_s: float
    release_s: float
    vibrato_cents: float = 0.0
    vibrato_hz: float = 5.0
    breath: float = 0.0
    gain: float = 1.0


@dataclass(frozen=True)
class Template:
    """A rendered per-pitch waveform (float32); ``loop`` says whether it may be tiled."""

    wave: np.ndarray
    loop: bool

    def __post_init__(self) -> None:
        self.wave.flags.writeable = False  # shared through the cache by every clip and thread


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# --- spectral envelopes ----------------------------------------------------------------------


def _lowpass_gain(freqs: np.ndarray, cutoff: float, order: float = 2.0) -> np.ndarray:
    return 1.0 / np.sqrt(1.0 + (freqs / cutoff) ** (2.0 * order))


def _formants(freqs: np.ndarray, centers: tuple[float, ...], widths: tuple[float, ...]) -> np.ndarray:
    """Sum of resonance peaks (vowel / body formants) evaluated at ``freqs``."""
    gain = np.full_like(freqs, 0.08)
    for center, width in zip(centers, widths, strict=True):
        gain += 1.0 / (1.0 + ((freqs - center) / (width / 2.0)) ** 2)
    return gain


def _harmonics(f0: float, sr: int, slope: float, cutoff: float, order: float = 2.0) -> Partials:
    """A harmonic series with amplitude ``k**-slope`` and a smooth low-pass (band-limited)."""
    count = max(1, int(NYQUIST_FRACTION * sr / f0))
    k = np.arange(1, count + 1, dtype=np.float64)
    amps = k**-slope * _lowpass_gain(k * f0, cutoff, order)
    return Partials(k, amps)


# --- loop construction -----------------------------------------------------------------------


@functools.cache
def _fast_sizes(low: int, high: int) -> np.ndarray:
    """FFT-friendly (5-smooth) lengths in [low, high]."""
    sizes = [
        2**a * 3**b * 5**c
        for a in range(int(math.log2(high)) + 1)
        for b in range(int(math.log(high, 3)) + 1)
        for c in range(int(math.log(high, 5)) + 1)
        if low <= 2**a * 3**b * 5**c <= high
    ]
    return _frozen(np.array(sorted(sizes), dtype=np.int64))


def _loop_length(f0: float, sr: int, seconds: float) -> tuple[int, int]:
    """``(n, m)``: a fast FFT length ``n`` near ``seconds`` holding ``m`` whole periods of ~``f0``.

    Among the 5-smooth lengths within 25 % of the target, the one whose whole number of periods
    lands closest to ``f0`` is chosen (error well under 0.1 cent).
    """
    target = seconds * sr
    sizes = _fast_sizes(int(0.75 * target), int(1.25 * target))
    periods = np.maximum(1, np.rint(sizes * f0 / sr))
    error = np.abs(periods * sr / sizes / f0 - 1.0)
    best = int(np.argmin(error))
    return int(sizes[best]), int(periods[best])


def _loop(ratios: np.ndarray, amps: np.ndarray, phases: np.ndarray, n: int, m: int, sr: int) -> np.ndarray:
    """Inverse-FFT synthesis of partials (``ratios`` of the loop's fundamental) on ``n`` samples."""
    bins = np.rint(ratios * m).astype(np.int64)
    keep = (bins > 0) & (bins < n // 2) & (bins * sr / n < NYQUIST_FRACTION * sr)
    spectrum = np.zeros(n // 2 + 1, dtype=np.complex128)
    np.add.at(spectrum, bins[keep], amps[keep] * np.exp(1j * phases[keep]) * (n / 2.0))
    return np.fft.irfft(spectrum, n)


def _noise_loop(
    f0: float, n: int, sr: int, center: float, width: float, rng: np.random.Generator
) -> np.ndarray:
    """Periodic band-pass noise (breath), unit RMS scaled below."""
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.exp(-0.5 * ((freqs - center) / (width / 2.0)) ** 2)
    shape[freqs > NYQUIST_FRACTION * sr] = 0.0
    spectrum = shape * np.exp(1j * rng.uniform(0.0, 2.0 * np.pi, size=freqs.shape))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _vibrato(loop: np.ndarray, sr: int, cents: float, rate_hz: float) -> np.ndarray:
    """Read the loop along a sinusoidally warped time axis: every partial bends by ``cents``.

    The rate is rounded to a whole number of cycles per loop so the result stays periodic.
    """
    n = loop.shape[0]
    cycles = max(1, round(rate_hz * n / sr))
    rate = cycles * sr / n
    depth = (2.0 ** (cents / 1200.0) - 1.0) * sr / (2.0 * np.pi * rate)
    t = np.arange(n, dtype=np.float64)
    pos = np.mod(t + depth * np.sin(2.0 * np.pi * cycles * t / n), n)
    return np.interp(pos, np.arange(n + 1, dtype=np.float64), np.append(loop, loop[0]))


def _ensemble(partials: Partials, detunes_cents: tuple[float, ...]) -> Partials:
    """Copies of ``partials`` detuned by ``detunes_cents`` (chorus/ensemble beating).

    The detune is applied linearly in frequency (exact to 0.01 cent at these sizes), so that
    symmetric detunes round to symmetric FFT bins and the ensemble's mean pitch stays exact.
    """
    ratios = np.concatenate([partials.ratios * (1.0 + d * math.log(2.0) / 1200.0) for d in detunes_cents])
    amps = np.concatenate([partials.amps for _ in detunes_cents]) / math.sqrt(len(detunes_cents))
    return Partials(ratios, amps)


# --- voices ----------------------------------------------------------------------------------

VOICES: dict[str, VoiceModel] = {
    v.name: v
    for v in (
        VoiceModel("piano", "decay", 0.002, 0.25, gain=1.0),
        VoiceModel("epiano", "decay", 0.003, 0.2, gain=1.0),
        VoiceModel("nylon", "decay", 0.002, 0.15, gain=1.0),
        VoiceModel("steel", "decay", 0.002, 0.15, gain=0.9),
        VoiceModel("eguitar", "decay", 0.002, 0.12, gain=0.85),
        VoiceModel("harp", "decay", 0.002, 0.3, gain=1.0),
        VoiceModel("bass", "decay", 0.004, 0.08, gain=1.0),
        VoiceModel("upright", "decay", 0.004, 0.1, gain=1.0),
        VoiceModel("bell", "decay", 0.001, 0.6, gain=0.7),
        VoiceModel("mallet", "decay", 0.001, 0.15, gain=0.9),
        VoiceModel("strings", "sustain", 0.25, 0.6, vibrato_cents=6.0, vibrato_hz=5.2, gain=0.55),
        VoiceModel("violin", "sustain", 0.09, 0.3, vibrato_cents=14.0, vibrato_hz=5.6, gain=0.6),
        VoiceModel("cello", "sustain", 0.1, 0.35, vibrato_cents=12.0, vibrato_hz=5.0, gain=0.65),
        VoiceModel("pad", "sustain", 0.9, 1.5, gain=0.5),
        VoiceModel("synth", "sustain", 0.01, 0.2, vibrato_cents=4.0, vibrato_hz=5.5, gain=0.35),
        VoiceModel("organ", "sustain", 0.015, 0.08, gain=0.4),
        VoiceModel("pipeorgan", "sustain", 0.06, 0.35, gain=0.4),
        VoiceModel("flute", "sustain", 0.06, 0.15, vibrato_cents=12.0, vibrato_hz=5.0, breath=0.05),
        VoiceModel("clarinet", "sustain", 0.04, 0.12, vibrato_cents=3.0, breath=0.02, gain=0.7),
        VoiceModel("oboe", "sustain", 0.04, 0.12, vibrato_cents=10.0, vibrato_hz=5.4, breath=0.02, gain=0.6),
        VoiceModel("sax", "sustain", 0.04, 0.12, vibrato_cents=12.0, vibrato_hz=5.2, breath=0.04, gain=0.55),
        VoiceModel("horn", "sustain", 0.07, 0.2, vibrato_cents=4.0, gain=0.7),
        VoiceModel("trumpet", "sustain", 0.03, 0.12, vibrato_cents=8.0, vibrato_hz=5.5, gain=0.5),
        VoiceModel("brass", "sustain", 0.06, 0.2, vibrato_cents=3.0, gain=0.5),
        VoiceModel("choir", "sustain", 0.25, 0.5, vibrato_cents=15.0, vibrato_hz=5.2, breath=0.03, gain=0.6),
        VoiceModel("accordion", "sustain", 0.03, 0.1, gain=0.45),
        VoiceModel("harmonica", "sustain", 0.04, 0.1, vibrato_cents=10.0, vibrato_hz=6.0, gain=0.5),
    )
}


def _decaying_partials(voice: str, f0: float, sr: int, rng: np.random.Generator) -> Partials:
    """Partials of the decaying voices: ratios, amplitudes and per-partial decay times."""
    low = (261.63 / f0) ** 0.5  # lower strings ring longer
    if voice in ("piano", "epiano"):
        count = max(1, int(NYQUIST_FRACTION * sr / f0))
        k = np.arange(1, min(count, 60) + 1, dtype=np.float64)
        if voice == "piano":
            inharm = 2e-4 * 2.0 ** ((12 * math.log2(f0 / 261.63)) / 24.0)
            ratios = k * np.sqrt(1.0 + inharm * k**2)
            amps = k**-1.2 * (0.25 + np.abs(np.sin(np.pi * k / 7.3))) * _lowpass_gain(k * f0, 3500.0)
            decays = np.clip(3.5 * low, 0.8, 14.0) / (1.0 + 0.22 * (k - 1) * (f0 / 261.63) ** 0.4)
        else:
            ratios = k
            # Tine and pickup: a strong fundamental, a "bark" of low harmonics that fades fast.
            amps = np.where(k == 1, 1.0, 0.55 * k**-1.4) * _lowpass_gain(k * f0, 3500.0)
            decays = np.clip(2.6 * low, 0.6, 8.0) / (1.0 + 0.9 * (k - 1))
            ratios = np.append(ratios, [7.0, 10.0])  # tine "ping"
            amps = np.append(amps, [0.04, 0.02])
            decays = np.append(decays, [0.12, 0.08])
        return Partials(ratios, amps, decays)
    if voice in ("nylon", "steel", "eguitar", "harp", "bass", "upright"):
        pluck, slope, cutoff, tau, damp = {
            "nylon": (0.18, 1.05, 3000.0, 2.2, 0.45),
            "steel": (0.14, 0.85, 5000.0, 2.8, 0.35),
            "eguitar": (0.2, 1.0, 2800.0, 3.0, 0.3),
            "harp": (0.3, 1.1, 3500.0, 3.6, 0.35),
            "bass": (0.22, 1.4, 1200.0, 2.0, 0.4),
            "upright": (0.25, 1.6, 900.0, 1.4, 0.6),
        }[voice]
        base = _harmonics(f0, sr, slope, cutoff)
        k = base.ratios
        amps = base.amps * (0.15 + np.abs(np.sin(np.pi * k * pluck)))
        decays = np.clip(tau * low, 0.4, 10.0) / (1.0 + damp * (k - 1) * (f0 / 196.0) ** 0.5)
        return Partials(k, amps, decays)
    if voice == "bell":
        ratios = np.array([1.0, 2.0, 2.76, 3.01, 5.40, 8.93])
        amps = np.array([1.0, 0.18, 0.3, 0.08, 0.12, 0.04])
        decays = np.clip(np.array([4.5, 2.5, 1.6, 1.2, 0.6, 0.3]) * low**0.6, 0.05, 10.0)
        return Partials(ratios, amps, decays)
    if voice == "mallet":
        ratios = np.array([1.0, 3.93, 9.2])
        amps = np.array([1.0, 0.22, 0.05])
        decays = np.clip(np.array([0.9, 0.25, 0.06]) * low, 0.03, 3.0)
        return Partials(ratios, amps, decays)
    raise KeyError(voice)


def _sustained_partials(voice: str, f0: float, sr: int) -> Partials:
    """Partials of the sustained voices' loops (before detuning)."""
    freqs_of = lambda p: p.ratios * f0  # noqa: E731
    if voice in ("strings", "violin", "cello"):
        p = _harmonics(f0, sr, 1.0, {"strings": 3200.0, "violin": 4200.0, "cello": 2600.0}[voice], 1.5)
        body = _formants(freqs_of(p), (450.0, 1100.0, 2700.0), (350.0, 700.0, 1500.0))
        p = Partials(p.ratios, p.amps * body)
        detune = {"strings": (-10.0, -3.5, 3.5, 10.0), "violin": (-2.0, 2.0), "cello": (-2.0, 2.0)}[voice]
        return _ensemble(p, detune)
    if voice == "pad":
        p = _harmonics(f0, sr, 1.0, max(700.0, 3.0 * f0), 2.0)
        return _ensemble(p, (-14.0, -5.0, 5.0, 14.0))
    if voice == "synth":
        p = _harmonics(f0, sr, 1.0, max(1800.0, 6.0 * f0), 2.0)
        return _ensemble(p, (-7.0, 7.0))
    if voice in ("organ", "pipeorgan"):
        # Drawbars 16', 8', 5 1/3', 4', 2 2/3', 2': ratios to the 8' fundamental.
        ratios = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
        amps = np.array([0.3, 1.0, 0.25, 0.6, 0.3, 0.35, 0.1, 0.12, 0.08])
        if voice == "pipeorgan":
            amps = amps * _lowpass_gain(ratios * f0, 4000.0)
            return _ensemble(Partials(ratios, amps), (-3.0, 0.0, 3.0))
        return Partials(ratios, amps * _lowpass_gain(ratios * f0, 5000.0))
    if voice == "flute":
        ratios = np.arange(1.0, 7.0)
        amps = np.array([1.0, 0.3, 0.12, 0.05, 0.025, 0.01])
        return Partials(ratios, amps)
    if voice == "clarinet":
        p = _harmonics(f0, sr, 1.0, 3000.0, 2.0)
        odd = np.where(p.ratios % 2 == 1, 1.0, 0.12)
        return Partials(p.ratios, p.amps * odd)
    if voice in ("oboe", "sax", "horn", "trumpet", "brass", "harmonica", "accordion"):
        slope, cutoff, formant, width = {
            "oboe": (0.6, 4000.0, 1300.0, 900.0),
            "sax": (0.9, 3000.0, 900.0, 1200.0),
            "horn": (1.3, 1200.0, 500.0, 600.0),
            "trumpet": (0.7, 3500.0, 1300.0, 1400.0),
            "brass": (1.0, 2200.0, 800.0, 1000.0),
            "harmonica": (0.7, 3500.0, 1600.0, 1500.0),
            "accordion": (0.7, 3500.0, 1500.0, 2000.0),
        }[voice]
        p = _harmonics(f0, sr, slope, cutoff, 2.0)
        amps = p.amps * _formants(freqs_of(p), (formant,), (width,))
        if voice == "accordion":
            return _ensemble(Partials(p.ratios, amps), (-8.0, 0.0, 8.0))
        if voice == "brass":
            return _ensemble(Partials(p.ratios, amps), (-5.0, 0.0, 5.0))
        return Partials(p.ratios, amps)
    if voice == "choir":
        p = _harmonics(f0, sr, 1.1, 3000.0, 3.0)
        vowel = _formants(freqs_of(p), (700.0, 1220.0, 2600.0), (130.0, 150.0, 250.0))
        return _ensemble(Partials(p.ratios, p.amps * vowel), (-9.0, -3.0, 3.0, 9.0))
    raise KeyError(voice)


def _normalize(wave: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(wave)))
    return wave / peak if peak > 0 else wave


def build_template(voice: str, pitch: int, sr: int) -> Template:
    """Render the waveform template of ``voice`` at MIDI ``pitch`` (peak 1, times voice gain).

    Deterministic: noise and phases come from a generator seeded by ``(voice, pitch)``.
    """
    model = VOICES[voice]
    f0 = midi_to_hz(pitch)
    rng = np.random.default_rng([pitch, sum(map(ord, voice)), len(voice)])
    if model.kind == "sustain":
        n, m = _loop_length(f0, sr, LOOP_SECONDS)
        p = _sustained_partials(voice, f0, sr)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=p.ratios.shape)
        wave = _normalize(_loop(p.ratios, p.amps, phases, n, m, sr))
        if model.breath > 0:
            center = {"flute": 2500.0, "choir": 1500.0}.get(voice, 2000.0)
            wave = wave + 0.15 * model.breath * _noise_loop(f0, n, sr, center, 2000.0, rng)
        if model.vibrato_cents > 0:
            wave = _vibrato(wave, sr, model.vibrato_cents, model.vibrato_hz)
        return Template((_normalize(wave) * model.gain).astype(np.float32), loop=True)
    p = _decaying_partials(voice, f0, sr, rng)
    assert p.decays is not None
    longest = float(np.max(p.decays))
    total = round(min(6.0, max(0.5, 3.0 * longest)) * sr)
    n, m = _loop_length(f0, sr, LOOP_SECONDS)
    wave = np.zeros(total, dtype=np.float64)
    # Group partials on the decay grid (log-interpolated weights) and give each group one loop.
    # A partial keeps one phase in every group, so its split decay sums coherently. The piano's
    # partials decay in two stages (prompt sound, then aftersound), as coupled strings do.
    stages = [(0.55, p.decays / 4.0), (0.45, p.decays)] if voice == "piano" else [(1.0, p.decays)]
    grid = np.log(DECAY_GRID)
    weights = np.zeros((grid.size, p.ratios.size))
    for share, decays in stages:
        pos = np.clip(np.interp(np.log(decays), grid, np.arange(grid.size)), 0, grid.size - 1)
        lo = np.floor(pos).astype(int)
        frac = pos - lo
        np.add.at(weights, (lo, np.arange(lo.size)), share * (1.0 - frac))
        np.add.at(weights, (np.minimum(lo + 1, grid.size - 1), np.arange(lo.size)), share * frac)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=p.ratios.shape)
    for g in range(grid.size):
        if not np.any(weights[g] > 0):
            continue
        tau = float(DECAY_GRID[g])
        length = min(total, round(7.0 * tau * sr))
        loop = _loop(p.ratios, p.amps * weights[g], phases, n, m, sr)
        reps = -(-length // n)
        seg = np.tile(loop, reps)[:length] if reps > 1 else loop[:length]
        wave[:length] += seg * np.exp(-np.arange(length) / (tau * sr))
    wave += _strike_noise(voice, f0, sr, rng, total)
    fade = min(total, round(0.3 * sr))
    wave[-fade:] *= np.linspace(1.0, 0.0, fade) ** 2
    return Template((_normalize(wave) * model.gain).astype(np.float32), loop=False)


def _strike_noise(voice: str, f0: float, sr: int, rng: np.random.Generator, total: int) -> np.ndarray:
    """A few milliseconds of filtered noise: hammer, pick or mallet contact."""
    level = {"piano": 0.015, "nylon": 0.02, "steel": 0.03, "harp": 0.01, "mallet": 0.02}.get(voice, 0.0)
    out = np.zeros(total)
    if level == 0.0:
        return out
    length = min(total, round(0.012 * sr))
    band = [min(f0 * 2, 0.4 * sr), min(f0 * 12 + 2000.0, 0.45 * sr)]
    sos = signal.butter(2, band, "bandpass", fs=sr, output="sos")
    burst = signal.sosfilt(sos, rng.standard_normal(length))
    out[:length] = level * burst / (np.max(np.abs(burst)) + 1e-12) * np.exp(-np.arange(length) / (0.003 * sr))
    return out


class TemplateCache:
    """A byte-bounded LRU cache of templates; results never depend on what is cached."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int], Template] = OrderedDict()
        self._bytes = 0

    def get(self, voice: str, pitch: int, sr: int) -> Template:
        key = (voice, pitch, sr)
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            return item
        item = build_template(voice, pitch, sr)
        self._items[key] = item
        self._bytes += item.wave.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.wave.nbytes
        return item


@functools.cache
def _release_curve(length: int) -> np.ndarray:
    """Release ramp 1 -> 0 (raised cosine): no click at the note end."""
    return _frozen((0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, length))).astype(np.float32))


@functools.cache
def _attack_curve(length: int) -> np.ndarray:
    return _frozen((0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length))).astype(np.float32))


def add_note(
    bus: np.ndarray,
    template: Template,
    model: VoiceModel,
    start: int,
    length: int,
    gain: float,
    sr: int,
    attack_s: float | None = None,
    release_s: float | None = None,
    offset: int = 0,
) -> None:
    """Mix one note into ``bus`` (mono float32) in place.

    ``start`` may be negative (a note carried over from the previous clip): its first samples
    are skipped. The note sounds for ``length`` samples plus its release.
    """
    release = max(1, round((model.release_s if release_s is None else release_s) * sr))
    attack = max(1, round((model.attack_s if attack_s is None else attack_s) * sr))
    wave = template.wave
    if template.loop:
        total = length + release
        reps = -(-(offset + total) // wave.shape[0])
        sig = (np.tile(wave, reps) if reps > 1 else wave)[offset : offset + total].copy()
    else:
        total = min(length + release, wave.shape[0])
        sig = wave[:total].copy()
        release = min(release, total)
    a = min(attack, total)
    sig[:a] *= _attack_curve(a)
    if total > length or not template.loop:
        tail_start = max(0, min(length, total - release))
        sig[tail_start : tail_start + release] *= _release_curve(release)[: total - tail_start]
        sig[tail_start + release :] = 0.0
    lo = max(0, -start)
    hi = min(total, bus.shape[0] - start)
    if hi > lo:
        bus[start + lo : start + hi] += gain * sig[lo:hi]


# --- percussion ------------------------------------------------------------------------------


@functools.cache
def drum_sample(name: str, sr: int) -> np.ndarray:
    """Soft percussion one-shots (float32, peak ~1): kick, snare, clap, brush, hat, open hat, shaker, rim."""
    rng = np.random.default_rng(sum(map(ord, name)))

    def band_noise(lo: float, hi: float, seconds: float) -> np.ndarray:
        hi = min(hi, 0.45 * sr)
        lo = min(lo, 0.5 * hi)  # low sample rates: keep a band below Nyquist
        sos = signal.butter(2, [lo, hi], "bandpass", fs=sr, output="sos")
        return signal.sosfilt(sos, rng.standard_normal(round(seconds * sr)))

    def env(seconds: float, tau: float, attack: float = 0.001) -> np.ndarray:
        t = np.arange(round(seconds * sr)) / sr
        return np.minimum(1.0, t / attack) * np.exp(-t / tau)

    if name == "kick":
        t = np.arange(round(0.45 * sr)) / sr
        freq = 48.0 + 70.0 * np.exp(-t / 0.03)
        wave = np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * env(0.45, 0.16, 0.002)
        wave[: round(0.004 * sr)] += 0.2 * band_noise(800.0, 4000.0, 0.004)
    elif name == "snare":
        t = np.arange(round(0.3 * sr)) / sr
        tone = np.sin(2.0 * np.pi * 185.0 * t) * np.exp(-t / 0.05)
        wave = 0.5 * tone + band_noise(1500.0, 7000.0, 0.3) * 3.0 * env(0.3, 0.07)
    elif name == "brush":
        wave = band_noise(2000.0, 9000.0, 0.35) * 3.0 * env(0.35, 0.09, 0.02)
    elif name == "clap":
        # A few hands a few milliseconds apart, then the room's short tail.
        noise = band_noise(900.0, 5000.0, 0.25) * 3.0
        bursts = sum(np.roll(env(0.25, 0.008), round(k * 0.009 * sr)) for k in range(3))
        wave = noise * (bursts + 0.5 * env(0.25, 0.06))
    elif name == "hat":
        wave = band_noise(7000.0, 16000.0, 0.12) * 3.0 * env(0.12, 0.025)
    elif name == "openhat":
        wave = band_noise(6000.0, 16000.0, 0.4) * 3.0 * env(0.4, 0.12)
    elif name == "shaker":
        wave = band_noise(4000.0, 11000.0, 0.15) * 3.0 * env(0.15, 0.035, 0.012)
    elif name == "rim":
        t = np.arange(round(0.08 * sr)) / sr
        wave = np.sin(2.0 * np.pi * 820.0 * t) * np.exp(-t / 0.012) + 0.3 * band_noise(
            2000.0, 6000.0, 0.08
        ) * env(0.08, 0.01)
    else:
        raise KeyError(name)
    fade = round(0.01 * sr)
    wave[-fade:] *= np.linspace(1.0, 0.0, fade)
    return _frozen(_normalize(wave).astype(np.float32))
