"""Sampled General MIDI instruments: the composer's notes rendered by FluidSynth from a SoundFont.

FluidSynth (Debian's ``libfluidsynth3`` through ``pyfluidsynth``) plays the notes with a GM
SoundFont (Debian's ``fluid-soundfont-gm`` or ``musescore-general-soundfont-small``, both MIT, or a
user's own ``.sf2``/``.sf3``). The SoundFont is parsed once per process and lent to a fresh
synthesizer for each clip: a clip depends only on its notes (same notes, same samples, whatever was
rendered before), and a fresh synthesizer costs well under a millisecond. A reused synthesizer
would not do: ``fluid_synth_system_reset`` leaves per-voice filter state and the reverb's
modulation phase behind, so the next clip's samples would depend on the previous clip.

A clip is rendered progressively (:meth:`SoundFontRenderer.play`), block by block, so its first
seconds can be heard before the rest exists. Notes that began in the previous clip (negative start)
are played from a short pre-roll that is rendered and discarded, so they sound mid-note at the clip
start instead of being re-attacked.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from musicmed_stream.errors import ConfigError, GenerationCancelled

log = logging.getLogger(__name__)

# Where Debian's GM SoundFonts land, best first. FluidR3 (sf2) loads its samples on demand in a
# few milliseconds; an .sf3 (Ogg-compressed) is decompressed once, into memory, when first used.
DEFAULT_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
)
INSTALL_HINT = (
    "install FluidSynth and a GM SoundFont (Debian: apt install libfluidsynth3 fluid-soundfont-gm; "
    "PyPI: pip install pyfluidsynth)"
)
DRUM_CHANNEL = 9
MIDI_CHANNELS = 16
PREROLL_S = 1.5  # how far back a note that began in the previous clip is started
# FluidSynth master gain. The engine's -1 dBFS limiter caught 2 of 60 clips of five sessions (by
# at most 2.5 dB, under 8 % of their time); less gain would put quiet clips under the chain's
# absolute -50 dBFS silence threshold, and the chain sets the loudness anyway.
SYNTH_GAIN = 0.6
EVENTS_PER_CANCEL_CHECK = 64
POLYPHONY = 64  # FluidSynth steals released and quiet voices first when a clip needs more
INTERPOLATION_LINEAR = 1  # FLUID_INTERP_LINEAR
HALF_RATE_BANDWIDTH = 0.8  # play at half the rate when the kept band ends below 0.8 x its Nyquist
FLUID_WARN = 2
_RESAMPLE_QUALITY = "HQ"


@dataclass(frozen=True)
class LayerMix:
    """How one layer sits in the mix: MIDI volume (CC7), pan (CC10), reverb and chorus sends."""

    volume: int
    pan: int
    reverb: int
    chorus: int


@dataclass(frozen=True)
class _Font:
    """A SoundFont parsed once per process and lent to every clip's synthesizer.

    ``holder`` loaded it and owns it (and never plays); ``lock`` serializes the synthesizers that
    play it, because FluidSynth counts sample references per SoundFont without a lock of its own.
    """

    holder: Any
    sfont: int
    lock: threading.Lock


_FONTS: dict[str, _Font] = {}
_FONTS_LOCK = threading.Lock()


def _load_fluidsynth() -> Any:
    """The ``fluidsynth`` module, or raise ``ImportError`` with the reason."""
    import fluidsynth  # pyfluidsynth; raises ImportError when the C library is missing

    lib = fluidsynth._fl
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    signatures = {
        "fluid_synth_write_float": (
            [pointer, integer, pointer, integer, integer, pointer, integer, integer],
            integer,
        ),
        "fluid_synth_set_interp_method": ([pointer, integer, integer], integer),
        "fluid_synth_get_sfont_by_id": ([pointer, integer], pointer),
        "fluid_synth_add_sfont": ([pointer, pointer], integer),
        "fluid_synth_remove_sfont": ([pointer, pointer], integer),
        "fluid_set_log_function": ([integer, pointer, pointer], pointer),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    return fluidsynth


def fluidsynth_unavailable_reason() -> str | None:
    """Why FluidSynth cannot be used here, or ``None`` when it can."""
    try:
        _load_fluidsynth()
    except (ImportError, OSError, AttributeError) as exc:
        return f"FluidSynth is not available ({exc})"
    return None


def find_soundfont(candidates: Sequence[str] = DEFAULT_SOUNDFONTS) -> Path | None:
    """The first readable SoundFont among ``candidates``."""
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file():
            return path.resolve()
    return None


def check_soundfont(path: str | Path) -> Path:
    """A user's SoundFont path, resolved; :class:`ConfigError` naming the key when unusable."""
    resolved = Path(path).expanduser()
    if resolved.suffix.lower() not in (".sf2", ".sf3"):
        raise ConfigError(f"builtin engine option soundfont must be a .sf2 or .sf3 file, got {str(path)!r}")
    if not resolved.is_file():
        raise ConfigError(f"builtin engine option soundfont: no such file {str(resolved)!r}")
    return resolved.resolve()


def _loaded_font(fs: Any, path: Path) -> _Font:
    """The process's copy of the SoundFont at ``path``, parsed on first use."""
    key = str(path)
    with _FONTS_LOCK:
        font = _FONTS.get(key)
        if font is None:
            # Compressed .sf3 samples are decoded when loaded: decode them once, for every clip;
            # an .sf2's samples are read when a preset is selected (FluidR3 is 140 MB).
            dynamic = int(path.suffix.lower() != ".sf3")
            settings = {
                "synth.dynamic-sample-loading": dynamic,
                "synth.reverb.active": 0,
                "synth.chorus.active": 0,
            }
            holder = fs.Synth(gain=SYNTH_GAIN, channels=MIDI_CHANNELS, **settings)
            sfid = holder.sfload(key)
            if sfid == -1:
                holder.delete()
                raise ConfigError(f"builtin engine option soundfont: FluidSynth cannot load {key!r}")
            font = _FONTS[key] = _Font(
                holder, fs._fl.fluid_synth_get_sfont_by_id(holder.synth, sfid), threading.Lock()
            )
    return font


class SoundFontRenderer:
    """Render notes with FluidSynth from one SoundFont, one fresh synthesizer per clip.

    Parameters
    ----------
    path : path-like
        A General MIDI ``.sf2`` or ``.sf3`` file.
    sample_rate : int
        Output rate (Hz).

    Raises
    ------
    ConfigError
        When FluidSynth is missing or the SoundFont cannot be loaded.
    """

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        try:
            self._fs = _load_fluidsynth()
        except (ImportError, OSError, AttributeError) as exc:
            raise ConfigError(f"sampled instruments need FluidSynth: {exc}; {INSTALL_HINT}") from exc
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self._font = _loaded_font(self._fs, self.path)

    @property
    def description(self) -> str:
        return f"sampled GM instruments from {self.path} (FluidSynth)"

    def render_rate(self, bandwidth_hz: float | None) -> int:
        """The rate a clip is played at: half the output rate when ``bandwidth_hz`` (the highest
        frequency the caller keeps) lies well below that half's Nyquist frequency."""
        if bandwidth_hz is not None and bandwidth_hz <= HALF_RATE_BANDWIDTH * self.sample_rate / 4:
            return self.sample_rate // 2
        return self.sample_rate

    def render(
        self,
        notes: Sequence[Any],
        frames: int,
        mix: dict[str, LayerMix],
        reverb: tuple[float, float],
        kit: int,
        cancel: threading.Event | None = None,
        bandwidth_hz: float | None = None,
    ) -> np.ndarray:
        """Play ``notes`` into a float32 ``(frames, 2)`` array (see :meth:`play`)."""
        blocks = list(self.play(notes, frames, mix, reverb, kit, cancel, bandwidth_hz))
        return np.concatenate(blocks) if blocks else np.zeros((0, 2), np.float32)

    def play(
        self,
        notes: Sequence[Any],
        frames: int,
        mix: dict[str, LayerMix],
        reverb: tuple[float, float],
        kit: int,
        cancel: threading.Event | None = None,
        bandwidth_hz: float | None = None,
        block: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Play ``notes``, yielding the clip as it is rendered: float32 ``(n, 2)`` blocks at the
        output rate, ``block`` frames each (the last one shorter), ``frames`` in all.

        Parameters
        ----------
        notes : sequence of composer notes
            Each with ``start``/``end`` (s from the clip start), ``pitch``, ``velocity``,
            ``layer`` and ``program`` (drums: ``layer == "drums"``, pitch a GM drum key).
        frames : int
            Clip length in samples.
        mix : dict
            :class:`LayerMix` per layer name.
        reverb : (room, level)
            FluidSynth reverb room size and level, both in [0, 1].
        kit : int
            GM drum-kit program (bank 128) of the clip.
        bandwidth_hz : float, optional
            The highest frequency the caller keeps (its low-pass). When it lies well below half
            the rate, the clip is played at half the rate and resampled with soxr's stream
            resampler: half the work for the dark, calm clips, with nothing lost below the
            caller's cut-off.
        block : int, optional
            Frames per yielded block (default: the whole clip at once). The samples do not
            depend on it.

        Raises
        ------
        GenerationCancelled
            When ``cancel`` is set; the synthesizer is let go.
        """
        block = max(1, int(block or frames))
        rate = self.render_rate(bandwidth_hz)
        with _ClipSynth(self._fs, self._font, rate, notes, mix, reverb, kit, cancel) as synth:
            if rate == self.sample_rate:
                for start in range(0, frames, block):
                    yield synth.render(min(block, frames - start))
            else:
                yield from _resampled(synth, rate, self.sample_rate, frames, block)


def _resampled(synth: _ClipSynth, rate: int, out_rate: int, frames: int, block: int) -> Iterator[np.ndarray]:
    """``synth``'s clip at ``out_rate`` in blocks of ``block`` frames (soxr's stream resampler)."""
    resampler = soxr.ResampleStream(rate, out_rate, 2, dtype="float32", quality=_RESAMPLE_QUALITY)
    played = -(-frames * rate // out_rate)  # frames to play at ``rate``
    step = -(-block * rate // out_rate)
    buffer = np.zeros((0, 2), np.float32)
    fed, flushed, done = 0, False, 0
    while done < frames:
        n = min(block, frames - done)
        while buffer.shape[0] < n and not flushed:
            take = min(step, played - fed)
            fed += take
            flushed = fed >= played  # the last chunk also flushes the resampler's delay line
            buffer = np.concatenate([buffer, resampler.resample_chunk(synth.render(take), last=flushed)])
        piece, buffer = buffer[:n], buffer[n:]
        if piece.shape[0] < n:  # soxr may end a frame short of the exact ratio: silence
            piece = np.concatenate([piece, np.zeros((n - piece.shape[0], 2), np.float32)])
        done += n
        yield np.ascontiguousarray(piece)


class _ClipSynth:
    """One clip's fresh FluidSynth synthesizer with the shared SoundFont and the clip's events."""

    def __init__(
        self,
        fs: Any,
        font: _Font,
        rate: int,
        notes: Sequence[Any],
        mix: dict[str, LayerMix],
        reverb: tuple[float, float],
        kit: int,
        cancel: threading.Event | None,
    ) -> None:
        self._fs, self._font, self._cancel = fs, font, cancel
        self._lib = fs._fl
        channels = _assign_channels(notes)
        preroll = min(PREROLL_S, max(0.0, -min((n.start for n in notes), default=0.0)))
        lead_in = round(preroll * rate)
        # (frame, off-before-on, channel, pitch, velocity), frames counted from the pre-roll's start
        events: list[tuple[int, int, int, int, int]] = []
        for note in notes:
            channel = channels[(note.layer, note.program)]
            on = lead_in + round(max(note.start, -preroll) * rate)
            events.append((on, 1, channel, note.pitch, int(min(127, max(1, note.velocity)))))
            if channel != DRUM_CHANNEL:
                events.append((max(lead_in + round(note.end * rate), on + 1), 0, channel, note.pitch, 0))
        events.sort()
        self._events, self._next, self._pos = events, 0, 0
        settings = {
            "synth.cpu-cores": 1,
            "synth.reverb.active": 1,
            "synth.chorus.active": 1,
            "synth.polyphony": POLYPHONY,
        }
        with font.lock:
            self._synth = fs.Synth(gain=SYNTH_GAIN, samplerate=rate, channels=MIDI_CHANNELS, **settings)
            try:
                self._configure(channels, mix, reverb, kit)
            except BaseException:
                self._release()
                raise
        self._done = False
        if lead_in:  # the pre-roll: notes from the previous clip reach their sound, unheard
            try:
                self.render(lead_in)
            except BaseException:
                self.__exit__()
                raise

    def _configure(
        self,
        channels: dict[tuple[str, int], int],
        mix: dict[str, LayerMix],
        reverb: tuple[float, float],
        kit: int,
    ) -> None:
        synth, lib = self._synth, self._lib
        # Linear interpolation: a quarter faster than the default 4th order, and GM samples are
        # recorded near the pitches they play, so the difference is not audible.
        lib.fluid_synth_set_interp_method(synth.synth, -1, INTERPOLATION_LINEAR)
        sfid = lib.fluid_synth_add_sfont(synth.synth, self._font.sfont)
        room, level = reverb
        synth.set_reverb(roomsize=float(room), damping=0.45, width=0.9, level=float(level))
        synth.set_chorus(nr=3, level=1.2, speed=0.25, depth=6.0, type=0)
        for (layer, program), channel in channels.items():
            if channel == DRUM_CHANNEL:
                synth.program_select(channel, sfid, 128, kit)
            else:
                synth.program_select(channel, sfid, 0, program)
            lm = mix[layer]
            synth.cc(channel, 7, lm.volume)
            synth.cc(channel, 10, lm.pan)
            synth.cc(channel, 91, lm.reverb)
            synth.cc(channel, 93, lm.chorus)
            synth.cc(channel, 64, 0)

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` frames, float32 ``(n, 2)``; events are applied at their frames.

        FluidSynth renders in 64-frame blocks and applies an event at the next block it renders,
        so the samples do not depend on how the clip is cut into calls.
        """
        out = np.empty((n, 2), dtype=np.float32)
        first, end = self._pos, self._pos + n
        write, handle, address = self._lib.fluid_synth_write_float, self._synth.synth, out.ctypes.data

        def play_to(frame: int) -> None:  # interleaved stereo: left at even floats, right at odd
            at = address + 8 * (self._pos - first)
            write(handle, frame - self._pos, at, 0, 2, at, 1, 2)
            self._pos = frame

        events, synth = self._events, self._synth
        with self._font.lock:
            while self._next < len(events) and events[self._next][0] < end:
                frame, is_on, channel, pitch, velocity = events[self._next]
                if self._next % EVENTS_PER_CANCEL_CHECK == 0:
                    self._check_cancel()
                if frame > self._pos:
                    play_to(frame)
                if is_on:
                    synth.noteon(channel, pitch, velocity)
                else:
                    synth.noteoff(channel, pitch)
                self._next += 1
            if end > self._pos:
                play_to(end)
        self._check_cancel()
        return out

    def _check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise GenerationCancelled("clip generation cancelled")

    def _release(self) -> None:
        """Give the SoundFont back and delete the synthesizer (call holding the font's lock)."""
        lib, handle = self._lib, self._synth.synth
        # Taking the SoundFont away makes FluidSynth look for every channel's preset anew and
        # warn that there is none; those warnings say nothing here. (Only this module sets
        # FluidSynth's log functions, so the default one, without data, is put back.)
        previous = lib.fluid_set_log_function(FLUID_WARN, None, None)
        try:
            lib.fluid_synth_remove_sfont(handle, self._font.sfont)
        finally:
            lib.fluid_set_log_function(FLUID_WARN, previous, None)
        self._synth.delete()

    def __enter__(self) -> _ClipSynth:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._done:
            self._done = True
            with self._font.lock:
                self._release()


def _assign_channels(notes: Sequence[Any]) -> dict[tuple[str, int], int]:
    """One MIDI channel per (layer, program); drums on channel 10; past 15 programs, share."""
    channels: dict[tuple[str, int], int] = {}
    free = [c for c in range(16) if c != DRUM_CHANNEL]
    for note in notes:
        key = (note.layer, note.program)
        if key in channels:
            continue
        if note.layer == "drums":
            channels[key] = DRUM_CHANNEL
        else:
            channels[key] = free[len([c for c in channels.values() if c != DRUM_CHANNEL]) % len(free)]
    return channels


def layer_mix(gain: float, pan: float, reverb_wet: float, chorus: float) -> LayerMix:
    """A layer's MIDI controllers from its linear gain, pan in [-1, 1] and effect sends in [0, 1].

    The SoundFont default modulators attenuate by 40 log10(127 / CC7) dB, i.e. amplitude goes as
    (CC7 / 127)^2, so CC7 = 127 sqrt(gain).
    """
    return LayerMix(
        volume=int(min(127, max(1, round(127 * math.sqrt(max(0.0, gain)))))),
        pan=int(min(127, max(0, round(64 + 63 * pan)))),
        reverb=int(min(127, max(0, round(127 * reverb_wet)))),
        chorus=int(min(127, max(0, round(127 * chorus)))),
    )
