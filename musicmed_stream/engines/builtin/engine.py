"""``BuiltinEngine``: the CPU composer and synthesizer behind the :class:`Engine` Protocol.

No downloads, no GPU: each clip is composed from the segment's valence/arousal, instrument and
genre (:mod:`.composer`), played with sampled General MIDI instruments by FluidSynth from a
SoundFont (:mod:`.soundfont`) or, where FluidSynth or a SoundFont is missing, with band-limited
synthetic voices (:mod:`.synth`), and given its brightness with one pedalboard low-pass (the room:
FluidSynth's reverb and chorus, or a pedalboard reverb for the synthetic voices). Same segment,
previous state and seed give bit-identical audio.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from typing import Any

import numpy as np
import pedalboard
from scipy import fft as sp_fft
from scipy import signal

from musicmed_stream.engines.base import Clip, Continuation
from musicmed_stream.engines.builtin.composer import (
    Composer,
    ComposerState,
    Layers,
    Note,
    continue_state,
    default_layers,
    initial_state,
)
from musicmed_stream.engines.builtin.mapping import (
    Features,
    apply_mood,
    features_for,
    resolve_instrument,
    resolve_style,
    velocity_gain,
)
from musicmed_stream.engines.builtin.soundfont import (
    INSTALL_HINT,
    SoundFontRenderer,
    check_soundfont,
    find_soundfont,
    fluidsynth_unavailable_reason,
    layer_mix,
)
from musicmed_stream.engines.builtin.synth import VOICES, TemplateCache, add_note, drum_sample
from musicmed_stream.errors import ConfigError, GenerationCancelled
from musicmed_stream.planner.types import Segment

MAX_CLIP_SECONDS = 600.0
LAYER_GAIN = {"lead": 0.9, "accomp": 0.42, "bass": 0.5, "pad": 0.3, "drums": 0.35}
LAYER_PAN = {
    "lead": 0.05,
    "accomp": -0.3,
    "bass": 0.0,
    "pad": -0.55,
    "pad_right": 0.55,
    "drums": 0.0,
    "perc": 0.35,
}
PERC_VOICES = frozenset({"hat", "openhat", "shaker", "rim", "brush"})  # the kit's high, off-centre pieces
MASTER_GAIN = 0.5
PEAK_CEILING = 10 ** (-1.0 / 20.0)  # -1 dBFS
EDGE_FADE_S = 0.01

# Chorus send per layer for the sampled instruments: a little width on sustained layers.
LAYER_CHORUS = {"lead": 0.05, "accomp": 0.1, "bass": 0.0, "pad": 0.35, "drums": 0.0}
SOUNDFONT_AUTO, SOUNDFONT_OFF = "auto", "none"

log = logging.getLogger(__name__)
_CACHE = TemplateCache()
_CACHE_LOCK = threading.Lock()


class BuiltinEngine:
    """Compose and synthesize clips on the CPU.

    Parameters
    ----------
    sample_rate : int
        Output rate (Hz), 8000-192000.
    soundfont : str
        ``"auto"`` (default): sampled GM instruments played by FluidSynth from the first GM
        SoundFont found (Debian's ``fluid-soundfont-gm`` or MuseScore General), else the
        synthetic voices, said in one log line. A path to a ``.sf2``/``.sf3`` file: that
        SoundFont (an error if it or FluidSynth is missing). ``"none"``: synthetic voices.
    overlap_fraction : float
        Fraction of a clip the chain crossfades with the next one (the chain's
        ``crossfade_fraction``); the next clip replays that region's notes so the crossfade joins
        the same music on the same beat grid.
    """

    name = "builtin"
    channels = 2

    def __init__(
        self, sample_rate: int = 44100, soundfont: str | None = SOUNDFONT_AUTO, overlap_fraction: float = 0.25
    ) -> None:
        if not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
            raise ConfigError(
                f"builtin engine option sample_rate must be an integer in 8000-192000, got {sample_rate!r}"
            )
        if not 0.0 <= overlap_fraction <= 0.5:
            raise ConfigError(
                f"builtin engine option overlap_fraction must be in [0, 0.5], got {overlap_fraction!r}"
            )
        self.sample_rate = sample_rate
        self.overlap_fraction = float(overlap_fraction)
        self.soundfont = _soundfont_renderer(soundfont, sample_rate)
        self.voices = "synth" if self.soundfont is None else f"soundfont:{self.soundfont.path.name}"

    def generate(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Clip:
        """Compose and render the clip of ``segment`` continuing ``previous``.

        Raises
        ------
        ConfigError
            On an invalid segment or a malformed previous built-in state.
        GenerationCancelled
            If ``cancel`` is set before the clip is finished.
        """
        _check_segment(segment)
        _check_cancel(cancel)
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        seed = int(seed) % 2**63  # numpy generators take non-negative seeds
        duration = float(segment.duration_s)
        style = resolve_style(segment.genre)
        inst_name, lead, percussive = resolve_instrument(segment.instrument)
        features = features_for(segment.valence, segment.arousal, style.tempo_factor)
        features = apply_mood(features, *dict.fromkeys((segment.mood, segment.emotion)))
        prev = _previous_state(previous)
        if prev is None:
            state = initial_state(features, seed, duration)
            carry: list[Note] = []
            start_s, tempo_start, lower = 0.0, features.tempo_bpm, 0.0
        else:
            state = continue_state(prev, features, seed)
            overlap = self.overlap_fraction * min(prev.duration_s, duration)
            carry = [n.shifted(overlap) for n in map(_note_from_dict, prev.carry) if n.end + overlap > 0]
            start_s, tempo_start, lower = prev.next_bar_s + overlap, prev.tempo, overlap
        layers = default_layers(lead, style, percussive, features)
        carry = [revoice(n, layers) for n in carry]
        arousal01 = min(1.0, max(0.0, (segment.arousal + 1.0) / 2.0))
        composer = Composer(features, style, layers, state, seed, duration, arousal01, cancel)
        new_notes, state = composer.compose(start_s, tempo_start)
        notes = sorted(carry + new_notes, key=lambda n: (n.start, n.pitch, n.layer))
        state.duration_s = duration
        keep_from = duration * (1.0 - self.overlap_fraction)
        state.carry = [_note_to_dict(n.shifted(-duration)) for n in notes if n.end > keep_from]
        frames = round(duration * self.sample_rate)
        if self.soundfont is None:
            audio = render_notes(notes, self.sample_rate, frames, features, cancel)
        else:
            audio = render_soundfont(self.soundfont, notes, frames, features, style.kit, cancel)
        if carry and lower > 0:
            audio = quadrature_overlap(audio, round(lower * self.sample_rate), self.sample_rate)
        midi = [n.midi() for n in notes if lower <= n.start < duration]
        info = {
            "key": state.key,
            "tempo_bpm": round(state.tempo, 2),
            "instrument": inst_name,
            "voice": lead.voice,
            "style": style.name,
            "program": lead.program,
            "kit": style.kit if layers.drum_level >= 0.05 else None,
            "voices": self.voices,
            "notes": len(notes),
        }
        return Clip(audio, self.sample_rate, segment.index, state.to_dict(), midi, info)


def _soundfont_renderer(option: str | None, sample_rate: int) -> SoundFontRenderer | None:
    """The FluidSynth renderer the ``soundfont`` option asks for; ``None`` for synthetic voices."""
    if option is None or option == SOUNDFONT_AUTO:
        reason = fluidsynth_unavailable_reason()
        path = find_soundfont() if reason is None else None
        if reason is None and path is None:
            reason = "no GM SoundFont was found"
        if reason is not None:
            _log_voices(f"synthetic voices, because {reason}; for sampled instruments {INSTALL_HINT}")
            return None
        renderer = SoundFontRenderer(path, sample_rate)
        _log_voices(renderer.description)
        return renderer
    if not isinstance(option, str):
        raise ConfigError(f"builtin engine option soundfont must be a path, 'auto' or 'none', got {option!r}")
    if option.strip().lower() in (SOUNDFONT_OFF, ""):
        _log_voices("synthetic voices (soundfont = 'none')")
        return None
    renderer = SoundFontRenderer(check_soundfont(option), sample_rate)
    _log_voices(renderer.description)
    return renderer


_VOICES_SAID: set[str] = set()


def _log_voices(description: str) -> None:
    """Say once per process which voices the built-in engine plays."""
    if description not in _VOICES_SAID:
        _VOICES_SAID.add(description)
        log.info("built-in engine: %s", description)


def revoice(note: Note, layers: Layers) -> Note:
    """A carried note played by this clip's instrument of its layer (octave-shifted into range).

    While the chain crossfades, the previous clip's instrument fades out on the same notes as
    this clip's instrument fades in: the timbre morphs instead of switching. A note already
    sounding at the clip start keeps its voice (its attack lies in the previous clip), and so
    does a note whose new voice would not sustain like the old one (a held pad chord handed to
    a piano would die away before the new bars begin).
    """
    inst = getattr(layers, note.layer, None)
    if inst is None or note.start < 0:  # drums keep their kit piece
        return note
    if VOICES[inst.voice].kind != VOICES[note.voice].kind:
        return note
    pitch = note.pitch
    while pitch < inst.low:
        pitch += 12
    while pitch > inst.high:
        pitch -= 12
    return Note(note.start, note.end, pitch, note.velocity, note.layer, inst.voice, inst.program)


def quadrature_overlap(audio: np.ndarray, overlap: int, sr: int, transition_s: float = 1.0) -> np.ndarray:
    """Shift the replayed opening by 90 degrees (Hilbert transform), then return to the original.

    The opening replays the previous clip's ending, which the chain crossfades with equal-power
    gains; those assume uncorrelated signals, so two copies of the same notes would swell by up
    to 3 dB mid-crossfade. The quadrature copy has the same magnitude spectrum but is orthogonal
    to the original, so the crossfade keeps its power. After the overlap, an equal-power fade of
    ``transition_s`` (between orthogonal signals, so again of constant power) returns to the
    original phase.
    """
    frames = audio.shape[0]
    fade = min(round(transition_s * sr), max(0, frames - overlap))
    end = min(frames, overlap + fade)
    pad = min(frames - end, sr // 2)  # room for the transform's circular edge, discarded
    size = sp_fft.next_fast_len(end + pad, real=True)
    shifted = np.imag(signal.hilbert(audio[: end + pad], N=size, axis=0))[:end]
    out = audio.copy()
    out[:overlap] = shifted[:overlap]
    if fade > 0:
        angle = np.linspace(0.0, np.pi / 2.0, fade)[:, None]
        out[overlap:end] = np.cos(angle) * shifted[overlap:end] + np.sin(angle) * audio[overlap:end]
    ramp = min(overlap, round(EDGE_FADE_S * sr))
    if ramp > 0:  # keep the clip's fade from silence
        out[:ramp] *= (np.sin(np.linspace(0.0, np.pi / 2.0, ramp)) ** 2)[:, None]
    peak = float(np.max(np.abs(out))) if frames else 0.0
    if peak > PEAK_CEILING:
        out *= PEAK_CEILING / peak
    return out.astype(np.float32)


def _check_segment(segment: Segment) -> None:
    for name in ("valence", "arousal", "duration_s"):
        value = getattr(segment, name)
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"segment {name} must be a finite number, got {value!r}")
    if not (-1.0001 <= segment.valence <= 1.0001 and -1.0001 <= segment.arousal <= 1.0001):
        raise ConfigError(
            f"segment valence/arousal must lie in [-1, 1], got ({segment.valence}, {segment.arousal})"
        )
    if not 0.1 <= segment.duration_s <= MAX_CLIP_SECONDS:
        raise ConfigError(
            f"segment duration_s must be in 0.1-{MAX_CLIP_SECONDS:g} s, got {segment.duration_s}"
        )


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled("clip generation cancelled")


def _previous_state(previous: Continuation | None) -> ComposerState | None:
    """The built-in state of the previous clip; ``None`` for a first clip or another engine's clip."""
    if previous is None or not previous.state or previous.state.get("engine") != "builtin":
        return None
    return ComposerState.from_dict(previous.state)


def _note_to_dict(note: Note) -> dict[str, Any]:
    return {
        "start": round(note.start, 6),
        "end": round(note.end, 6),
        "pitch": note.pitch,
        "velocity": note.velocity,
        "layer": note.layer,
        "voice": note.voice,
        "program": note.program,
    }


def _note_from_dict(data: dict[str, Any]) -> Note:
    try:
        note = Note(
            float(data["start"]),
            float(data["end"]),
            int(data["pitch"]),
            int(data["velocity"]),
            str(data["layer"]),
            str(data["voice"]),
            int(data["program"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid built-in engine state: carried note {data!r}") from exc
    if note.layer not in LAYER_GAIN or (note.layer != "drums" and note.voice not in VOICES):
        raise ConfigError(f"invalid built-in engine state: carried note {data!r}")
    return note


def _pan(position: float) -> tuple[float, float]:
    """Constant-power pan gains for ``position`` in [-1, 1]."""
    angle = (position + 1.0) * math.pi / 4.0
    return math.cos(angle), math.sin(angle)


def render_notes(
    notes: list[Note], sr: int, frames: int, features: Features, cancel: threading.Event | None = None
) -> np.ndarray:
    """Synthesize ``notes`` into a stereo float32 clip of ``frames`` samples with its room.

    Each layer is mixed mono, panned with constant power, then the whole mix goes through one
    pedalboard pass: a low-pass at the emotion's brightness and a reverb sized by arousal.
    """
    buses = {name: np.zeros(frames, dtype=np.float32) for name in LAYER_PAN}
    for i, note in enumerate(notes):
        if i % 64 == 0:
            _check_cancel(cancel)
        start = round(note.start * sr)
        if start >= frames:
            continue
        gain = velocity_gain(note.velocity) * LAYER_GAIN[note.layer]
        if note.layer == "drums":
            sample = drum_sample(note.voice, sr)
            bus = buses["perc" if note.voice in PERC_VOICES else "drums"]
            lo, hi = max(0, -start), min(sample.shape[0], frames - start)
            if hi > lo:
                bus[start + lo : start + hi] += gain * sample[lo:hi]
            continue
        model = VOICES[note.voice]
        with _CACHE_LOCK:
            template = _CACHE.get(note.voice, note.pitch, sr)
        length = max(1, round((note.end - note.start) * sr))
        offset = (abs(start) * 31 + note.pitch * 1031) % template.wave.shape[0] if template.loop else 0
        # Short notes on slow-speaking voices (strings, pads) still reach their level and stop
        # cleanly: the envelope shrinks with the note.
        seconds = note.end - note.start
        attack = min(model.attack_s, 0.3 * seconds)
        release = min(model.release_s, max(0.08, 0.6 * seconds))
        if note.layer == "pad" and template.loop:
            # A wide pad: the two sides read the loop half a loop apart (decorrelated beating).
            half = template.wave.shape[0] // 2
            for bus, shift in ((buses["pad"], 0), (buses["pad_right"], half)):
                add_note(
                    bus, template, model, start, length, gain * 0.71, sr, attack, release, offset + shift
                )
            continue
        add_note(buses[note.layer], template, model, start, length, gain, sr, attack, release, offset)
    _check_cancel(cancel)
    mix = np.zeros((2, frames), dtype=np.float32)
    for name, bus in buses.items():
        left, right = _pan(LAYER_PAN[name])
        mix[0] += left * bus
        mix[1] += right * bus
    room = pedalboard.Reverb(
        room_size=features.reverb_room, damping=0.5, wet_level=features.reverb_wet, dry_level=0.85, width=1.0
    )
    return _finish(mix * MASTER_GAIN, sr, features, room)


def render_soundfont(
    renderer: SoundFontRenderer,
    notes: list[Note],
    frames: int,
    features: Features,
    kit: int,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Play ``notes`` with sampled GM instruments (FluidSynth) into a stereo float32 clip.

    Layers get their level, pan and sends as MIDI controllers; FluidSynth's reverb is sized by
    arousal like the synthetic voices' room; then the same brightness low-pass and peak ceiling.
    """
    mix = {
        layer: layer_mix(
            gain / LAYER_GAIN["lead"],
            LAYER_PAN[layer] if layer != "pad" else 0.0,
            min(1.0, 1.6 * features.reverb_wet),
            LAYER_CHORUS[layer],
        )
        for layer, gain in LAYER_GAIN.items()
    }
    cutoff = min(features.brightness_hz, 0.45 * renderer.sample_rate)
    audio = renderer.render(notes, frames, mix, (features.reverb_room, 0.9), kit, cancel, cutoff)
    return _finish(audio, renderer.sample_rate, features, None)


def _finish(mix: np.ndarray, sr: int, features: Features, room: pedalboard.Plugin | None) -> np.ndarray:
    """Brightness low-pass (and ``room``), peak at -1 dBFS at most, 10-ms edge fades; ``(frames, 2)``."""
    plugins: list[pedalboard.Plugin] = [
        pedalboard.LowpassFilter(cutoff_frequency_hz=min(features.brightness_hz, 0.45 * sr))
    ]
    if room is not None:
        plugins.append(room)
    out = pedalboard.Pedalboard(plugins)(np.ascontiguousarray(mix, dtype=np.float32), sr)
    frames = out.shape[1]
    peak = float(np.max(np.abs(out))) if frames else 0.0
    if peak > PEAK_CEILING:
        out *= PEAK_CEILING / peak
    fade = min(frames // 2, round(EDGE_FADE_S * sr))
    if fade > 0:
        ramp = np.sin(np.linspace(0.0, np.pi / 2.0, fade, dtype=np.float32)) ** 2
        out[:, :fade] *= ramp
        out[:, -fade:] *= ramp[::-1]
    return np.ascontiguousarray(out.T, dtype=np.float32)
