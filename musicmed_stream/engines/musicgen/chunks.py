"""Cutting a clip's streamed chunks to its exact length (shared by the engine and the batch scheduler)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from musicmed_stream.engines.base import Clip


class ClipChunks:
    """Streamed audio of one clip, capped at the clip's ``wanted`` samples.

    The codec decodes whole frames, so the stream can run past the clip's end (cut here) or, when
    windows are held back, fall short of it (the rest is taken from the finished clip).
    """

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.sent = 0

    def take(self, chunk: np.ndarray) -> np.ndarray | None:
        """The part of mono ``chunk`` still within the clip, as ``(frames, 1)``; None if nothing is."""
        chunk = np.asarray(chunk).reshape(-1)[: max(0, self.wanted - self.sent)]
        self.sent += chunk.size
        return chunk.reshape(-1, 1) if chunk.size else None

    def finish(self, clip: Clip) -> Iterator[np.ndarray | Clip]:
        """What is left to send once ``clip`` is finished: the missing end of its audio, then the clip."""
        if self.sent < self.wanted:
            yield clip.audio[self.sent :]
            self.sent = self.wanted
        yield clip
