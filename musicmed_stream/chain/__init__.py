"""The method's audio post-processing, usable clip by clip and block by block.

Clip level, before a clip is queued: :func:`prepare_clip` (:func:`trim_silence` ->
:func:`denoise` -> :func:`normalize_loudness`) and :func:`conditioning_tail` (what the next clip
is conditioned on). Block level, on the way to the sink: :class:`Crossfader` (equal-power,
quarter-clip overlap) -> :class:`BlockProcessor` (high-pass, true-peak limiter). The offline
render uses the same objects through :class:`SessionMixer` / :func:`process_session`.
"""

from musicmed_stream.chain.block import BlockProcessor, HighPass, TruePeakLimiter, true_peak, true_peak_dbtp
from musicmed_stream.chain.clip import (
    as_frames,
    conditioning_tail,
    denoise,
    integrated_loudness,
    normalize_loudness,
    prepare_clip,
    resample,
    sound_bounds,
    trim_silence,
)
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.chain.crossfade import Crossfader, equal_power_gains, overlap_frames
from musicmed_stream.chain.session import SessionMixer, process_session

__all__ = [
    "BlockProcessor",
    "ChainConfig",
    "Crossfader",
    "HighPass",
    "SessionMixer",
    "TruePeakLimiter",
    "as_frames",
    "conditioning_tail",
    "denoise",
    "equal_power_gains",
    "integrated_loudness",
    "normalize_loudness",
    "overlap_frames",
    "prepare_clip",
    "process_session",
    "resample",
    "sound_bounds",
    "trim_silence",
    "true_peak",
    "true_peak_dbtp",
]
