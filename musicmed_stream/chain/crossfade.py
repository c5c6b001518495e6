"""Equal-power crossfading of consecutive clips, pulled block by block."""

from __future__ import annotations

import functools
import math
from collections import deque

import numpy as np

from musicmed_stream.chain.clip import as_frames
from musicmed_stream.errors import AudioError


@functools.lru_cache(maxsize=8)
def equal_power_gains(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gains of an equal-power crossfade of ``frames`` samples.

    ``fade_out = cos(pi/2 * t)``, ``fade_in = sin(pi/2 * t)`` at the sample centres
    ``t = (i + 0.5) / frames``, so ``fade_out**2 + fade_in**2 == 1``: two uncorrelated signals
    keep their power through the overlap. float32, shape ``(frames, 1)``, read-only (cached:
    consecutive clips mostly have the same length).
    """
    t = (np.arange(frames, dtype=np.float64) + 0.5) / max(frames, 1)
    angle = 0.5 * np.pi * t
    fade_out, fade_in = np.cos(angle).astype(np.float32)[:, None], np.sin(angle).astype(np.float32)[:, None]
    fade_out.flags.writeable = fade_in.flags.writeable = False
    return fade_out, fade_in


def overlap_frames(len_a: int, len_b: int, fraction: float) -> int:
    """Overlap of two consecutive clips: ``fraction`` of the shorter one, in whole frames."""
    return math.floor(fraction * min(len_a, len_b))


class Crossfader:
    """Joins prepared clips with equal-power crossfades; audio is pulled as it becomes final.

    A clip's audio is released up to the start of its final overlap region as soon as it is
    pushed; the overlap region is released (crossfaded) when the next clip arrives, or as is
    after :meth:`close`. The overlap of two clips is ``fraction`` times the shorter clip, so a
    clip never has to wait for more than ``fraction`` of itself. Output is identical whatever
    the sizes of the pulls.

    Parameters
    ----------
    channels : int
        Channel count of every clip.
    fraction : float
        Crossfade length as a fraction of the shorter of two consecutive clips, in [0, 0.5].
    """

    def __init__(self, channels: int, fraction: float = 0.25) -> None:
        if channels < 1:
            raise AudioError(f"channels must be >= 1, got {channels}")
        if not 0.0 <= fraction <= 0.5:
            raise AudioError(f"crossfade fraction must be in [0, 0.5], got {fraction}")
        self.channels = channels
        self.fraction = fraction
        self._ready: deque[np.ndarray] = deque()
        self._ready_frames = 0
        self._current: np.ndarray | None = None
        self._current_pos = 0  # frames of the current clip already moved to the ready queue
        self._pushed_frames = 0  # output frames covered by all clips pushed so far
        self._pulled = 0
        self._closed = False
        self.clip_starts: list[int] = []
        """Output frame at which each pushed clip begins (the start of its fade-in)."""

    @property
    def available(self) -> int:
        """Frames that can be pulled now."""
        return self._ready_frames

    @property
    def position(self) -> int:
        """Frames pulled so far."""
        return self._pulled

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        """Closed and fully pulled."""
        return self._closed and self._ready_frames == 0

    def push(self, clip: np.ndarray) -> int:
        """Append a prepared clip; returns the output frame at which it begins.

        Raises
        ------
        AudioError
            If the crossfader is closed or the clip's channel count differs.
        """
        if self._closed:
            raise AudioError("cannot push a clip into a closed crossfader")
        data = as_frames(clip)
        if data.shape[1] != self.channels:
            raise AudioError(f"clip has {data.shape[1]} channels, the crossfader {self.channels}")
        if data.shape[0] == 0:
            # Nothing to play; the previous clip keeps its overlap for the next real clip.
            self.clip_starts.append(self._pushed_frames)
            return self._pushed_frames
        previous = self._current
        if previous is None:
            start = self._pushed_frames
            self._current, self._current_pos = data, 0
        else:
            overlap = overlap_frames(previous.shape[0], data.shape[0], self.fraction)
            self._release(previous, previous.shape[0] - overlap)
            if overlap:
                fade_out, fade_in = equal_power_gains(overlap)
                self._enqueue(previous[-overlap:] * fade_out + data[:overlap] * fade_in)
            start = self._pushed_frames - overlap
            self._current, self._current_pos = data, overlap
        self._pushed_frames = start + data.shape[0]
        self.clip_starts.append(start)
        # Everything before the largest overlap the next clip could ask for is final.
        self._release(self._current, self._current.shape[0] - math.floor(self.fraction * data.shape[0]))
        return start

    def close(self) -> None:
        """No more clips: the last clip's reserved end becomes available."""
        if self._current is not None:
            self._release(self._current, self._current.shape[0])
        self._closed = True

    def pull(self, max_frames: int | None = None) -> np.ndarray:
        """Take up to ``max_frames`` (all available if None) output frames, float32 ``(n, channels)``."""
        want = self._ready_frames if max_frames is None else min(max_frames, self._ready_frames)
        pieces: list[np.ndarray] = []
        got = 0
        while got < want:
            head = self._ready[0]
            take = min(head.shape[0], want - got)
            pieces.append(head[:take])
            if take == head.shape[0]:
                self._ready.popleft()
            else:
                self._ready[0] = head[take:]
            got += take
        self._ready_frames -= got
        self._pulled += got
        if not pieces:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0].copy()

    def _release(self, clip: np.ndarray, stop: int) -> None:
        if stop > self._current_pos:
            self._enqueue(clip[self._current_pos : stop])
            self._current_pos = stop

    def _enqueue(self, piece: np.ndarray) -> None:
        if piece.shape[0]:
            self._ready.append(piece.astype(np.float32, copy=False))
            self._ready_frames += piece.shape[0]
