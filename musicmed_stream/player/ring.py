"""A fixed-size ring buffer of PCM frames between the block path and the audio callback.

The writer (the daemon's feeder thread) and the reader (the sink, e.g. the PortAudio callback)
run on different threads. Both sides only copy into or out of one preallocated array under a
short lock, so the real-time side never allocates and never waits on generation.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class RingBuffer:
    """Single-producer, single-consumer ring of float32 frames ``(capacity, channels)``.

    Parameters
    ----------
    capacity : int
        Frames the buffer holds.
    channels : int
        Channels per frame.

    Notes
    -----
    ``frames_written`` and ``frames_read`` count every frame that ever went through the buffer;
    the read count is the play head of the sink, in output frames.
    """

    def __init__(self, capacity: int, channels: int) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError("capacity and channels must be positive")
        self._data = np.zeros((capacity, channels), dtype=np.float32)
        self._lock = threading.Lock()
        self._read = 0  # total frames read
        self._written = 0  # total frames written
        self.readable = threading.Event()  # set when frames were written
        self.writable = threading.Event()  # set when frames were read

    @property
    def capacity(self) -> int:
        return self._data.shape[0]

    @property
    def channels(self) -> int:
        return self._data.shape[1]

    @property
    def frames_read(self) -> int:
        return self._read

    @property
    def frames_written(self) -> int:
        return self._written

    def wait_for(self, frames: int, timeout: float) -> bool:
        """Wait until at least ``frames`` are ready to be read; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self.available() < frames:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.readable.clear()
            if self.available() < frames:
                self.readable.wait(min(left, 0.01))
        return True

    def available(self) -> int:
        """Frames ready to be read."""
        with self._lock:
            return self._written - self._read

    def space(self) -> int:
        """Frames that can be written without overwriting unread data."""
        with self._lock:
            return self.capacity - (self._written - self._read)

    def write(self, frames: np.ndarray, drop_unread: bool = False) -> int:
        """Copy as many leading frames of ``frames`` as fit; return how many were copied. With
        ``drop_unread`` the unread frames are dropped first (counted as read), in one step, so that
        the reader never finds the ring empty in between."""
        with self._lock:
            if drop_unread:
                self._read = self._written
            count = min(frames.shape[0], self.capacity - (self._written - self._read))
            self._copy_in(frames[:count], self._written % self.capacity)
            self._written += count
        if count:
            self.readable.set()
        return count

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` frames into ``out``; return how many were copied.

        Frames of ``out`` past the returned count are left untouched (the caller zero-fills).
        """
        with self._lock:
            count = min(out.shape[0], self._written - self._read)
            start = self._read % self.capacity
            first = min(count, self.capacity - start)
            out[:first] = self._data[start : start + first]
            out[first:count] = self._data[: count - first]
            self._read += count
        if count:
            self.writable.set()
        return count

    def retract(self, frame: int) -> int:
        """Take back the unread frames from output frame ``frame`` on (never what was read); returns
        the frame from which writing continues."""
        with self._lock:
            self._written = max(self._read, min(frame, self._written))
            return self._written

    def clear(self) -> int:
        """Drop every unread frame (counted as read); return how many were dropped."""
        with self._lock:
            dropped = self._written - self._read
            self._read = self._written
        self.writable.set()
        return dropped

    def _copy_in(self, frames: np.ndarray, start: int) -> None:
        count = frames.shape[0]
        first = min(count, self.capacity - start)
        self._data[start : start + first] = frames[:first]
        self._data[: count - first] = frames[first:]
