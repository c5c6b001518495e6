"""Sampled General MIDI instruments: the composer's notes rendered by FluidSynth from a SoundFont.

FluidSynth (Debian's ``libfluidsynth3`` through ``pyfluidsynth``) plays the notes with a GM
SoundFont (Debian's ``fluid-soundfont-gm`` or ``musescore-general-soundfont-small``, both MIT, or a
user's own ``.sf2``/``.sf3``). Each clip gets a fresh synthesizer, so a clip depends only on its
notes: same notes, same samples, whatever was rendered before. Loaded sample data is shared between
synthesizers by FluidSynth's sample cache, kept warm by one long-lived holder per SoundFont.

Notes that began in the previous clip (negative start) are played from a short pre-roll that is
rendered and discarded, so they sound mid-note at the clip start instead of being re-attacked.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
from collections.abc import Sequence
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
PREROLL_S = 1.5  # how far back a note that began in the previous clip is started
SYNTH_GAIN = 0.6  # FluidSynth master gain; the clip's peak is normalized afterwards anyway
EVENTS_PER_CANCEL_CHECK = 64
POLYPHONY = 32  # voices per synthesizer; FluidSynth steals released and quiet voices first
INTERPOLATION_LINEAR = 1  # FLUID_INTERP_LINEAR
RENDER_THREADS = 2  # FluidSynth renders without the GIL: two synthesizers play half the channels each
HALF_RATE_BANDWIDTH = 0.8  # play at half the rate when the kept band ends below 0.8 x its Nyquist
RELEASE_LOAD_S = 0.3  # a note's release tail, counted when balancing the parts
# One long-lived synthesizer per (SoundFont, rate): keeps FluidSynth's sample cache warm.
_HOLDERS: dict[tuple[str, int], tuple[Any, int]] = {}
_HOLDERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class LayerMix:
    """How one layer sits in the mix: MIDI volume (CC7), pan (CC10), reverb and chorus sends."""

    volume: int
    pan: int
    reverb: int
    chorus: int


def _load_fluidsynth() -> Any:
    """The ``fluidsynth`` module, or raise ``ImportError`` with the reason."""
    import fluidsynth  # pyfluidsynth; raises ImportError when the C library is missing

    lib = fluidsynth._fl
    lib.fluid_synth_write_float.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.fluid_synth_write_float.restype = ctypes.c_int
    lib.fluid_synth_set_interp_method.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
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
        # Compressed .sf3 samples are decoded when loaded: decode them once, for every clip.
        self._dynamic = self.path.suffix.lower() != ".sf3"
        self._hold(self.sample_rate)

    @property
    def description(self) -> str:
        return f"sampled GM instruments from {self.path} (FluidSynth)"

    def _new_synth(self, rate: int) -> tuple[Any, int]:
        settings = {
            "synth.cpu-cores": 1,
            "synth.dynamic-sample-loading": int(self._dynamic),
            "synth.reverb.active": 1,
            "synth.chorus.active": 1,
            "synth.polyphony": POLYPHONY,
        }
        synth = self._fs.Synth(gain=SYNTH_GAIN, samplerate=rate, **settings)
        # Linear interpolation: a quarter faster than the default 4th order, and GM samples are
        # recorded near the pitches they play, so the difference is not audible.
        self._fs._fl.fluid_synth_set_interp_method(synth.synth, -1, INTERPOLATION_LINEAR)
        sfid = synth.sfload(str(self.path))
        if sfid == -1:
            synth.delete()
            raise ConfigError(f"builtin engine option soundfont: FluidSynth cannot load {str(self.path)!r}")
        return synth, sfid

    def _hold(self, rate: int) -> None:
        """Keep one synthesizer with the SoundFont loaded, so later loads hit the sample cache."""
        key = (str(self.path), rate)
        with _HOLDERS_LOCK:
            if key not in _HOLDERS:
                _HOLDERS[key] = self._new_synth(rate)

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
        """Play ``notes`` into a ``(2, frames)`` float32 array.

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
            the rate, the clip is played at half the rate and resampled (soxr): half the work
            for the dark, calm clips, with nothing lost below the caller's cut-off.
        """
        rate = self.sample_rate
        if bandwidth_hz is not None and bandwidth_hz <= HALF_RATE_BANDWIDTH * rate / 2:
            rate //= 2
            self._hold(rate)
        channels = _assign_channels(notes)
        preroll = min(PREROLL_S, max(0.0, -min((n.start for n in notes), default=0.0)))
        parts = _split_by_load(notes, channels, RENDER_THREADS)
        played = -(-frames * rate // self.sample_rate)
        # The other parts on daemon threads (they never hold up the process's exit), the first here.
        results: list[np.ndarray | BaseException | None] = [None] * len(parts)

        def play(i: int) -> None:
            try:
                results[i] = self._render_part(
                    rate, parts[i], channels, preroll, played, mix, reverb, kit, cancel
                )
            except BaseException as exc:  # re-raised in the calling thread
                results[i] = exc

        helpers = [threading.Thread(target=play, args=(i,), daemon=True) for i in range(1, len(parts))]
        for thread in helpers:
            thread.start()
        play(0)
        for thread in helpers:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        out = results[0]
        for part in results[1:]:
            out += part  # FluidSynth's voices, reverb and chorus are all linear: parts add up
        if rate == self.sample_rate:
            return out
        full = soxr.resample(out.T, rate, self.sample_rate, quality="HQ").T
        return np.ascontiguousarray(np.pad(full, ((0, 0), (0, max(0, frames - full.shape[1]))))[:, :frames])

    def _render_part(self, rate: int, *args: Any) -> np.ndarray:
        synth, sfid = self._new_synth(rate)
        try:
            return self._play(synth, sfid, rate, *args)
        finally:
            synth.delete()

    def _play(
        self,
        synth: Any,
        sfid: int,
        sr: int,
        notes: Sequence[Any],
        channels: dict[tuple[str, int], int],
        preroll: float,
        frames: int,
        mix: dict[str, LayerMix],
        reverb: tuple[float, float],
        kit: int,
        cancel: threading.Event | None,
    ) -> np.ndarray:
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
        lead_in = round(preroll * sr)
        total = lead_in + frames
        events: list[tuple[int, int, int, int, int]] = []  # (frame, off-before-on, channel, pitch, vel)
        for note in notes:
            channel = channels[(note.layer, note.program)]
            on = lead_in + round(max(note.start, -preroll) * sr)
            if on >= total:
                continue
            events.append((on, 1, channel, note.pitch, int(min(127, max(1, note.velocity)))))
            if channel != DRUM_CHANNEL:
                off = lead_in + round(note.end * sr)
                if off < total:
                    events.append((max(off, on + 1), 0, channel, note.pitch, 0))
        events.sort()
        out = np.zeros((2, total), dtype=np.float32)
        left, right = out[0].ctypes.data, out[1].ctypes.data
        write = self._fs._fl.fluid_synth_write_float
        pos = 0
        for i, (frame, is_on, channel, pitch, velocity) in enumerate(events):
            if i % EVENTS_PER_CANCEL_CHECK == 0 and cancel is not None and cancel.is_set():
                raise GenerationCancelled("clip generation cancelled")
            if frame > pos:
                write(synth.synth, frame - pos, left + 4 * pos, 0, 1, right + 4 * pos, 0, 1)
                pos = frame
            if is_on:
                synth.noteon(channel, pitch, velocity)
            else:
                synth.noteoff(channel, pitch)
        if total > pos:
            write(synth.synth, total - pos, left + 4 * pos, 0, 1, right + 4 * pos, 0, 1)
        return out[:, lead_in:]


def _split_by_load(notes: Sequence[Any], channels: dict[tuple[str, int], int], parts: int) -> list[list[Any]]:
    """Notes split by channel into ``parts`` groups of about equal sounding time (rendered in parallel).

    The split depends only on the notes, so a clip renders the same on any machine.
    """
    load: dict[int, float] = {}
    for note in notes:
        channel = channels[(note.layer, note.program)]
        load[channel] = load.get(channel, 0.0) + max(0.05, note.end - note.start) + RELEASE_LOAD_S
    groups: list[list[int]] = [[] for _ in range(parts)]
    totals = [0.0] * parts
    for channel in sorted(load, key=lambda c: (-load[c], c)):
        i = totals.index(min(totals))
        groups[i].append(channel)
        totals[i] += load[channel]
    members = [set(g) for g in groups if g]
    return [[n for n in notes if channels[(n.layer, n.program)] in m] for m in members] or [[]]


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
