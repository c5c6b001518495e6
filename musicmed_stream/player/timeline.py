"""The playback timeline: prepared audio placed on one frame axis, crossfaded block by block.

The :class:`~musicmed_stream.player.deck.Deck` schedules clips on the timeline and renders it block
by block, live and offline alike. A transition point can move while the audio plays: a re-target
or a skip fades the current clip out early under the new one (:meth:`Timeline.cut_in`), a late
clip is bridged by a looped tail (:meth:`Timeline.append` of a loop), a stop fades everything out
(:meth:`Timeline.fade_all`). Gains are equal-power (sine in, cosine out) and every fade-out is a
separate multiplicative envelope, so a second fade started mid-fade stays continuous. The curves
are the chain's (:func:`musicmed_stream.chain.crossfade.equal_power_gains`). A clip may arrive in
pieces (a streaming engine's chunks): pieces placed back to back play as one, and a crossfade
out of the clip fades every piece that sounds in its window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from musicmed_stream.chain.crossfade import equal_power_gains

VoiceKind = Literal["clip", "piece", "bridge"]
"""``clip``: a clip's audio (or its first piece); ``piece``: a later piece of a clip that arrives in
pieces; ``bridge``: audio that stands in for a late clip (a loop, a stand-in clip)."""


@dataclass(frozen=True)
class Label:
    """What a voice is, for whoever scheduled it: its kind, the segment it belongs to and an
    opaque ``payload`` of the scheduler's (the timeline and the deck never look inside)."""

    kind: VoiceKind = "clip"
    index: int = -1
    payload: Any = None


@dataclass(eq=False)
class Voice:
    """Audio placed on the timeline.

    Attributes
    ----------
    audio : np.ndarray
        float32 ``(frames, channels)`` at the timeline's sample rate.
    start : int
        Timeline frame at which ``audio[0]`` plays.
    fade_in : int
        Frames of the equal-power fade-in from ``start``.
    label : Label
        What the voice is.
    fade_outs : list of (int, int)
        Equal-power fade-outs ``(first_frame, end_frame)``; their gains multiply.
    """

    audio: np.ndarray
    start: int
    fade_in: int = 0
    label: Label = field(default_factory=Label)
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
        self.keep_frames = 0  # voices that ended this recently are kept, for rewind()
        self._retired: list[Voice] = []

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

    def end(self) -> int:
        """First frame after everything scheduled (the position when nothing is)."""
        tail = self.tail
        return max(tail.end, self.position) if tail else self.position

    def append(self, audio: np.ndarray, overlap: int, label: Label | None = None) -> Voice:
        """Schedule ``audio`` after the last voice, crossfading over ``overlap`` frames.

        Every voice that sounds within the last ``overlap`` frames fades out over them (a clip in
        pieces fades as one). If the last voice ends sooner than ``overlap`` frames from now, the
        crossfade starts now and is shorter; if nothing is playing the voice starts now with no
        fade; ``overlap = 0`` places it right after the last voice (the next piece of a clip).
        """
        stop = self.end()
        begin = max(stop - max(overlap, 0), self.position)
        if begin < stop:
            for voice in self.voices:
                if voice.end > begin:
                    voice.fade_outs.append((begin, stop))
        voice = Voice(_float32(audio), begin, stop - begin, label or Label())
        self.voices.append(voice)
        return voice

    def cut_in(self, audio: np.ndarray, fade: int, label: Label | None = None) -> Voice:
        """Start ``audio`` now, fading every playing voice out over ``fade`` frames.

        Voices that had not started are dropped (they belonged to the path being replaced).
        """
        self.drop_future()
        self.fade_all(fade)
        voice = Voice(_float32(audio), self.position, fade if self.voices else 0, label or Label())
        self.voices.append(voice)
        return voice

    def fade_all(self, fade: int) -> None:
        """Fade every voice out over the next ``fade`` frames."""
        for voice in self.voices:
            if voice.end > self.position:
                voice.fade_outs.append((self.position, self.position + fade))

    def fade_tail(self, fade: int) -> None:
        """End what is scheduled with a fade-out of ``fade`` frames (the end of a session): every
        voice sounding in the last ``fade`` frames fades out over them."""
        stop = self.end()
        begin = max(stop - fade, self.position)
        if begin < stop:
            for voice in self.voices:
                if voice.end > begin:
                    voice.fade_outs.append((begin, stop))

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
        if self.keep_frames:
            horizon = stop - self.keep_frames
            self._retired = [v for v in self._retired if v.end > horizon]
            self._retired += [v for v in self.voices if horizon < v.end <= stop]
        self.voices = [v for v in self.voices if v.end > stop]
        return started

    def rewind(self, position: int) -> None:
        """Go back to ``position`` (at most ``keep_frames`` back): what played since will play
        again, the voices that ended meanwhile included."""
        back = [v for v in self._retired if v.end > position]
        self._retired = [v for v in self._retired if v.end <= position]
        self.voices = back + self.voices
        self.position = position

    def clear(self) -> None:
        """Remove every voice (the position stays)."""
        self.voices = []
        self._retired = []


# Few entries: a crossfade's curves are up to 2 x 1.3 MB (7.5 s at 44.1 kHz), and consecutive
# crossfades mostly share a length; 64 entries could hold 170 MB after re-targets of many lengths.
@functools.lru_cache(maxsize=8)
def _curves(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded equal-power curves of ``frames``: ``[1, fade_out..., 0]`` and ``[fade_in..., 1]``."""
    fade_out, fade_in = equal_power_gains(max(frames, 0))
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    return np.concatenate([one, fade_out[:, 0], zero]), np.concatenate([fade_in[:, 0], one])


def _float32(audio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(audio, dtype=np.float32)
