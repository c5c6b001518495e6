"""Equal-power crossfade curves and the overlap rule of consecutive clips.

The crossfades themselves are placed and rendered by :class:`~musicmed_stream.player.timeline.Timeline`
(through the :class:`~musicmed_stream.player.deck.Deck`), one path for the daemon and the render."""

from __future__ import annotations

import functools
import math

import numpy as np


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
