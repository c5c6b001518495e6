"""Click-free gain changes for the block path (volume, pause)."""

from __future__ import annotations

import numpy as np


class GainRamp:
    """A gain that moves linearly to its target over ``ramp_frames`` and is applied per block.

    Parameters
    ----------
    gain : float
        Initial gain.
    ramp_frames : int
        Frames a full 0 -> 1 change takes; smaller changes take proportionally less.
    """

    def __init__(self, gain: float, ramp_frames: int) -> None:
        self.current = float(gain)
        self.target = float(gain)
        self.ramp_frames = max(int(ramp_frames), 1)

    def set(self, target: float) -> None:
        self.target = float(target)

    @property
    def settled(self) -> bool:
        return self.current == self.target

    def apply(self, block: np.ndarray) -> None:
        """Multiply ``block`` ``(frames, channels)`` in place by the ramping gain."""
        if self.settled:
            if self.current != 1.0:
                block *= np.float32(self.current)
            return
        step = 1.0 / self.ramp_frames
        delta = self.target - self.current
        frames = block.shape[0]
        ramp = self.current + np.sign(delta) * step * np.arange(1, frames + 1)
        ramp = np.minimum(ramp, self.target) if delta > 0 else np.maximum(ramp, self.target)
        block *= ramp[:, None].astype(np.float32)
        self.current = float(ramp[-1])
