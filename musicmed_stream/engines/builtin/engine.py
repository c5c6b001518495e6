"""``BuiltinEngine``: the CPU composer and synthesizer behind the :class:`Engine` Protocol.

No downloads, no GPU: each clip is composed from the segment's valence/arousal, instrument and
genre (:mod:`.composer`), played with sampled General MIDI instruments by FluidSynth from a
SoundFont (:mod:`.soundfont`) or, where FluidSynth or a SoundFont is missing, with band-limited
synthetic voices (:mod:`.synth`), and given its brightness with one pedalboard low-pass (the room:
FluidSynth's reverb and chorus, or a pedalboard reverb for the synthetic voices). Same segment,
previous state and seed give bit-identical audio.

A clip is made front to back, in fixed-size pieces (``stream_chunk_seconds``): every step after
the composer (FluidSynth, the half-rate resampler, the low-pass, the quadrature opening, the peak
limiter, the edge fades) runs on the pieces in order and carries its state, and no step looks
further ahead than the quadrature opening and the limiter's 6 ms. :meth:`BuiltinEngine.stream`
yields the pieces as they are finished and :meth:`BuiltinEngine.generate` joins the same pieces,
so both give the same samples.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pedalboard
from scipy import fft as sp_fft
from scipy import signal

from musicmed_stream.chain.block import TruePeakLimiter
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
PEAK_CEILING_DB = -1.0  # dBFS (and dBTP): the clip's highest sample
EDGE_FADE_S = 0.01
TRANSITION_S = 1.0  # after the replayed opening, back from quadrature to the original phase
STREAM_CHUNK_S = 2.0
RENDER_STEP_S = 0.25

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
    stream_chunk_seconds : float
        Length of the pieces :meth:`stream` yields (the last piece of a clip may be shorter);
        piece ``k`` is ``clip.audio[k * n : (k + 1) * n]`` with ``n`` = :attr:`stream_chunk_frames`.
    """

    name = "builtin"
    channels = 2
    synthesized = True  # clean audio: no noise floor for the chain's gate (ChainConfig.for_engine)

    def __init__(
        self,
        sample_rate: int = 44100,
        soundfont: str | None = SOUNDFONT_AUTO,
        overlap_fraction: float = 0.25,
        stream_chunk_seconds: float = STREAM_CHUNK_S,
    ) -> None:
        if not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
            raise ConfigError(
                f"builtin engine option sample_rate must be an integer in 8000-192000, got {sample_rate!r}"
            )
        if not 0.0 <= overlap_fraction <= 0.5:
            raise ConfigError(
                f"builtin engine option overlap_fraction must be in [0, 0.5], got {overlap_fraction!r}"
            )
        if (
            not isinstance(stream_chunk_seconds, numbers.Real)
            or isinstance(stream_chunk_seconds, bool)
            or not 0.01 <= stream_chunk_seconds <= MAX_CLIP_SECONDS
        ):
            raise ConfigError(
                "builtin engine option stream_chunk_seconds must be in "
                f"0.01-{MAX_CLIP_SECONDS:g} s, got {stream_chunk_seconds!r}"
            )
        self.sample_rate = sample_rate
        self.overlap_fraction = float(overlap_fraction)
        self.stream_chunk_seconds = float(stream_chunk_seconds)
        self.soundfont = _soundfont_renderer(soundfont, sample_rate)
        self.voices = "synth" if self.soundfont is None else f"soundfont:{self.soundfont.path.name}"

    @property
    def stream_chunk_frames(self) -> int:
        """Frames per streamed piece."""
        return max(1, round(self.stream_chunk_seconds * self.sample_rate))

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
        score = self._compose(segment, previous, seed, cancel)
        return score.clip(np.concatenate(list(self._pieces(score, cancel))))

    def stream(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Iterator[np.ndarray | Clip]:
        """Yield the clip's audio in pieces as it is rendered, then the finished :class:`Clip`.

        The pieces are read-only float32 ``(frames, 2)`` arrays of :attr:`stream_chunk_frames`
        frames (the last one may be shorter); joined, they are exactly :meth:`generate`'s audio
        for the same arguments, so a saved clip sliced the same way gives the same pieces. The
        first piece is ready once the composer and the first seconds are done (a clip that
        continues another first renders its replayed opening, a quarter of a clip). Closing the
        iterator early stops the rendering. Raises what :meth:`generate` raises.
        """
        score = self._compose(segment, previous, seed, cancel)
        pieces: list[np.ndarray] = []
        for piece in self._pieces(score, cancel):
            piece.setflags(write=False)  # the clip is made of these very pieces
            pieces.append(piece)
            yield piece
        yield score.clip(np.concatenate(pieces))

    def _compose(
        self, segment: Segment, previous: Continuation | None, seed: int, cancel: threading.Event | None
    ) -> _Score:
        """Check the arguments and compose the clip's notes and the next state."""
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
        return _Score(
            segment_index=segment.index,
            sample_rate=self.sample_rate,
            frames=round(duration * self.sample_rate),
            notes=notes,
            features=features,
            kit=style.kit,
            replayed=round(lower * self.sample_rate) if carry and lower > 0 else 0,
            state=state.to_dict(),
            midi=[n.midi() for n in notes if lower <= n.start < duration],
            info=info,
        )

    def _pieces(self, score: _Score, cancel: threading.Event | None) -> Iterator[np.ndarray]:
        """The clip's audio, float32 ``(n, 2)`` pieces of :attr:`stream_chunk_frames`, in order."""
        sr, frames, block = self.sample_rate, score.frames, self.stream_chunk_frames
        # Rendered in shorter steps than the pieces: the limiter's look-ahead then waits for one
        # short step past a piece instead of the whole next piece. No step depends on the size.
        step = min(block, max(1, round(RENDER_STEP_S * sr)))
        features = score.features
        plugins: list[pedalboard.Plugin] = [
            pedalboard.LowpassFilter(cutoff_frequency_hz=min(features.brightness_hz, 0.45 * sr))
        ]
        if self.soundfont is None:
            mix = render_notes(score.notes, sr, frames, cancel)
            source: Iterator[np.ndarray] = (mix[i : i + step] for i in range(0, frames, step))
            plugins.append(
                pedalboard.Reverb(
                    room_size=features.reverb_room,
                    damping=0.5,
                    wet_level=features.reverb_wet,
                    dry_level=0.85,
                    width=1.0,
                )
            )
        else:
            source = play_soundfont(self.soundfont, score.notes, frames, features, score.kit, cancel, step)
        # pedalboard carries the filters' state from call to call (reset=False): same samples
        # whatever the pieces.
        board = pedalboard.Pedalboard(plugins)
        audio = (board(piece, sr, reset=False) for piece in source)
        if score.replayed:
            audio = _quadrature_opening(audio, score.replayed, sr, frames, step)
        yield from _finished(audio, sr, frames, block, cancel)


@dataclass(frozen=True)
class _Score:
    """A composed clip, ready to be rendered."""

    segment_index: int
    sample_rate: int
    frames: int
    notes: list[Note]
    features: Features
    kit: int
    replayed: int  # frames of the opening that replay the previous clip's ending (0: none)
    state: dict[str, Any]
    midi: list[dict[str, Any]]
    info: dict[str, Any]

    def clip(self, audio: np.ndarray) -> Clip:
        return Clip(audio, self.sample_rate, self.segment_index, self.state, self.midi, self.info)


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


def quadrature_overlap(
    audio: np.ndarray, overlap: int, sr: int, transition_s: float = TRANSITION_S
) -> tuple[np.ndarray, int]:
    """Shift the replayed opening by 90 degrees (Hilbert transform), then return to the original.

    The opening replays the previous clip's ending, which the chain crossfades with equal-power
    gains; those assume uncorrelated signals, so two copies of the same notes would swell by up
    to 3 dB mid-crossfade. The quadrature copy has the same magnitude spectrum but is orthogonal
    to the original, so the crossfade keeps its power. After the overlap, an equal-power fade of
    ``transition_s`` (between orthogonal signals, so again of constant power) returns to the
    original phase.

    Parameters
    ----------
    audio : np.ndarray
        float32 ``(frames, 2)``: the clip, or at least its first :func:`quadrature_span` frames.
    overlap : int
        Frames of the replayed opening.

    Returns
    -------
    (head, end) : (np.ndarray, int)
        The new first ``end`` frames (float32); ``audio`` from ``end`` on is unchanged.
    """
    frames = audio.shape[0]
    end, span = quadrature_span(overlap, sr, frames, transition_s)
    fade = end - overlap
    # The transform's circular edge falls in the padding beyond ``end``, which is discarded.
    size = sp_fft.next_fast_len(span, real=True)  # of the real input: faster than the complex size
    shifted = np.imag(signal.hilbert(audio[:span], N=size, axis=0))[:end]
    head = shifted.copy()
    if fade > 0:
        angle = np.linspace(0.0, np.pi / 2.0, fade)[:, None]
        head[overlap:end] = np.cos(angle) * shifted[overlap:end] + np.sin(angle) * audio[overlap:end]
    return head.astype(np.float32), end


def quadrature_span(
    overlap: int, sr: int, frames: int, transition_s: float = TRANSITION_S
) -> tuple[int, int]:
    """``(end, span)``: :func:`quadrature_overlap` changes the first ``end`` frames of a clip of
    ``frames`` and reads the first ``span`` (half a second more, room for the circular edge)."""
    fade = min(round(transition_s * sr), max(0, frames - overlap))
    end = min(frames, overlap + fade)
    return end, end + min(frames - end, sr // 2)


def _quadrature_opening(
    steps: Iterator[np.ndarray], overlap: int, sr: int, frames: int, step: int
) -> Iterator[np.ndarray]:
    """``steps`` (of ``step`` frames) with the replayed opening in quadrature
    (:func:`quadrature_overlap`): waits for the steps the transform reads, then hands them on."""
    _, span = quadrature_span(overlap, sr, frames)
    head: list[np.ndarray] = []
    have = 0
    for audio in steps:
        head.append(audio)
        have += audio.shape[0]
        if have >= span:
            break
    audio = np.concatenate(head)
    new, end = quadrature_overlap(audio, overlap, sr)
    audio[:end] = new
    for start in range(0, audio.shape[0], step):
        yield audio[start : start + step]
    yield from steps


def _finished(
    steps: Iterator[np.ndarray], sr: int, frames: int, block: int, cancel: threading.Event | None
) -> Iterator[np.ndarray]:
    """The last steps of the rendered ``steps``: at most -1 dBFS, 10-ms fades at both ends; the
    clip as ``block``-frame pieces, ``frames`` in all.

    The ceiling is the chain's true-peak limiter, which leaves every sample below it untouched:
    the instruments play with headroom, so it seldom acts (a whole-clip gain would need the whole
    clip before the first piece). Its 6-ms look-ahead delays the stream; the delay is dropped.
    """
    limiter = TruePeakLimiter(sr, 2, ceiling_dbtp=PEAK_CEILING_DB, dtype=np.float32)
    fade = min(frames // 2, round(EDGE_FADE_S * sr))
    ramp = np.sin(np.linspace(0.0, np.pi / 2.0, fade, dtype=np.float32)) ** 2 if fade else None
    skip, done = limiter.latency, 0
    ready: list[np.ndarray] = []
    have = 0

    def limited() -> Iterator[np.ndarray]:
        for step in steps:
            _check_cancel(cancel)
            yield limiter.process(step)
        yield limiter.process(np.zeros((limiter.latency, 2), np.float32))  # the last frames

    for out in limited():
        if skip:
            cut = min(skip, out.shape[0])
            out, skip = out[cut:], skip - cut
        ready.append(out)
        have += out.shape[0]
        while have >= min(block, frames - done) and done < frames:
            audio = np.concatenate(ready) if len(ready) > 1 else ready[0]
            n = min(block, frames - done)
            piece = audio[:n]
            ready, have = [audio[n:]], have - n
            if ramp is not None:
                _edge_fades(piece, done, frames, ramp)
            done += n
            yield piece


def _edge_fades(piece: np.ndarray, start: int, frames: int, ramp: np.ndarray) -> None:
    """Fade the clip in over its first and out over its last ``len(ramp)`` frames, in place, for
    the piece that begins at frame ``start``."""
    fade, stop = ramp.shape[0], start + piece.shape[0]
    if start < fade:
        piece[: min(fade, stop) - start] *= ramp[start : min(fade, stop), None]
    tail = frames - fade
    if stop > tail:
        lo = max(start, tail)
        piece[lo - start :] *= ramp[::-1][lo - tail : stop - tail, None]


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
    notes: list[Note], sr: int, frames: int, cancel: threading.Event | None = None
) -> np.ndarray:
    """Synthesize ``notes`` into a dry stereo float32 ``(frames, 2)`` mix (before the room).

    Each layer is mixed mono and panned with constant power; the engine then gives the mix its
    brightness low-pass and a reverb sized by arousal (pedalboard).
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
    sides = np.zeros((2, frames), dtype=np.float32)
    for name, bus in buses.items():
        left, right = _pan(LAYER_PAN[name])
        sides[0] += (left * MASTER_GAIN) * bus
        sides[1] += (right * MASTER_GAIN) * bus
    return np.ascontiguousarray(sides.T)


def play_soundfont(
    renderer: SoundFontRenderer,
    notes: list[Note],
    frames: int,
    features: Features,
    kit: int,
    cancel: threading.Event | None = None,
    block: int | None = None,
) -> Iterator[np.ndarray]:
    """Play ``notes`` with sampled GM instruments (FluidSynth): float32 ``(n, 2)`` blocks of
    ``block`` frames as they are rendered, before the brightness low-pass.

    Layers get their level, pan and sends as MIDI controllers; FluidSynth's reverb is sized by
    arousal like the synthetic voices' room. A clip whose low-pass keeps less than half the band
    is played at half the rate.
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
    return renderer.play(notes, frames, mix, (features.reverb_room, 0.9), kit, cancel, cutoff, block)
