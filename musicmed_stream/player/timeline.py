"""The playback timeline: prepared clips placed on one frame axis, crossfaded block by block.

The daemon schedules clips on the timeline and the feeder renders it block by block. Unlike a
fixed offline crossfade, a transition point can move while the audio plays: a re-target or a
skip fades the current clip out early under the new one (:meth:`Timeline.cut_in`), a late clip
is bridged by a looped tail (:meth:`Timeline.append` of a loop), a stop fades everything out
(:meth:`Timeline.fade_all`). Gains are equal-power (sine in, cosine out) and every fade-out is a
separate multiplicative envelope, so a second fade started mid-fade stays continuous. The curves
are the chain's (:func:`musicmed_stream.chain.crossfade.equal_power_gains`); the chain's
:class:`~musicmed_stream.chain.Crossfader` serves the offline render, where transitions never move.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicmed_stream.chain.crossfade import equal_power_gains


@dataclass(eq=False)
class Voice:
    """One clip placed on the timeline.

    Attributes
    ----------
    audio : np.ndarray
        float32 ``(frames, channels)`` at the timeline's sample rate.
    start : int
        Timeline frame at which ``audio[0]`` plays.
    fade_in : int
        Frames of the equal-power fade-in from ``start``.
    tag : dict
        What the voice is (segment, bridge), for the scheduler.
    fade_outs : list of (int, int)
        Equal-power fade-outs ``(first_frame, end_frame)``; their gains multiply.
    """

    audio: np.ndarray
    start: int
    fade_in: int = 0
    tag: dict[str, Any] = field(default_factory=dict)
    fade_outs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def end(self) -> int:
        """First timeline frame after the voice's last audible frame."""
        return min([self.start + self.audio.shape[0], *(stop for _, stop in self.fade_outs)])

    def gain(self, first: int, count: int) -> np.ndarray:
        """Envelope for timeline frames ``first .. first + count``, shape ``(count,)``."""
        t = np.arange(first, first + count)
        gain = np.ones(count, dtype=np.float32)
        if self.fade_in > 0:
            _, fade_in = _curves(self.fade_in)
            gain *= fade_in[np.clip(t - self.start, 0, self.fade_in)]
        for begin, stop in self.fade_outs:
            fade_out, _ = _curves(stop - begin)
            gain *= fade_out[np.clip(t - begin + 1, 0, stop - begin + 1)]
        return gain


class Timeline:
    """Clips on a frame axis, rendered in order from :attr:`position`.

    Parameters
    ----------
    channels : int
        Channels of every voice and of the rendered blocks.
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.position = 0
        self.voices: list[Voice] = []

    @property
    def tail(self) -> Voice | None:
        """The voice that ends last, or ``None`` when nothing is scheduled."""
        return max(self.voices, key=lambda v: v.end, default=None)

    def ahead(self) -> int:
        """Frames of scheduled audio from :attr:`position` on."""
        tail = self.tail
        return max(0, tail.end - self.position) if tail else 0

    def future(self) -> list[Voice]:
        """Voices that have not started yet, in start order."""
        return sorted((v for v in self.voices if v.start >= self.position), key=lambda v: v.start)

    def append(self, audio: np.ndarray, overlap: int, tag: dict[str, Any] | None = None) -> Voice:
        """Schedule ``audio`` after the last voice, crossfading over ``overlap`` frames.

        If the last voice ends sooner than ``overlap`` frames from now, the crossfade starts now
        and is shorter; if nothing is playing the voice starts now with no fade.
        """
        tail = self.tail
        if tail is None or tail.end <= self.position:
            voice = Voice(_float32(audio), self.position, 0, tag or {})
        else:
            begin = max(tail.end - overlap, self.position)
            stop = tail.end
            tail.fade_outs.append((begin, stop))
            voice = Voice(_float32(audio), begin, stop - begin, tag or {})
        self.voices.append(voice)
        return voice

    def cut_in(self, audio: np.ndarray, fade: int, tag: dict[str, Any] | None = None) -> Voice:
        """Start ``audio`` now, fading every playing voice out over ``fade`` frames.

        Voices that had not started are dropped (they belonged to the path being replaced).
        """
        self.drop_future()
        self.fade_all(fade)
        voice = Voice(_float32(audio), self.position, fade if self.voices else 0, tag or {})
        self.voices.append(voice)
        return voice

    def fade_all(self, fade: int) -> None:
        """Fade every voice out over the next ``fade`` frames."""
        for voice in self.voices:
            if voice.end > self.position:
                voice.fade_outs.append((self.position, self.position + fade))

    def fade_tail(self, fade: int) -> None:
        """Make the last voice end with a fade-out of ``fade`` frames (the end of a session)."""
        tail = self.tail
        if tail is not None:
            begin = max(tail.end - fade, self.position)
            tail.fade_outs.append((begin, tail.end))

    def drop_future(self) -> list[Voice]:
        """Remove the voices that have not started, and the crossfades that led into them."""
        dropped = self.future()
        if dropped:
            self.voices = [v for v in self.voices if v not in dropped]
            for voice in self.voices:
                voice.fade_outs = [(b, e) for b, e in voice.fade_outs if b < self.position]
        return dropped

    def render(self, out: np.ndarray) -> list[tuple[Voice, int]]:
        """Mix the next ``len(out)`` frames into ``out`` (overwritten) and advance.

        Returns
        -------
        list of (Voice, int)
            Voices whose first frame lies in this block, with its offset in the block.
        """
        count = out.shape[0]
        first, stop = self.position, self.position + count
        out[:] = 0.0
        started = []
        for voice in self.voices:
            lo, hi = max(first, voice.start), min(stop, voice.end)
            if hi <= lo:
                continue
            if voice.start >= first:
                started.append((voice, voice.start - first))
            segment = voice.audio[lo - voice.start : hi - voice.start]
            out[lo - first : hi - first] += segment * voice.gain(lo, hi - lo)[:, None]
        self.position = stop
        self.voices = [v for v in self.voices if v.end > stop]
        return started

    def clear(self) -> None:
        """Remove every voice (the position stays)."""
        self.voices = []


@functools.lru_cache(maxsize=64)
def _curves(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded equal-power curves of ``frames``: ``[1, fade_out..., 0]`` and ``[fade_in..., 1]``."""
    fade_out, fade_in = equal_power_gains(max(frames, 0))
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    return np.concatenate([one, fade_out[:, 0], zero]), np.concatenate([fade_in[:, 0], one])


def _float32(audio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(audio, dtype=np.float32)
