"""The method's audio post-processing, usable clip by clip and block by block.

Clip level, before a clip is scheduled: :func:`to_output` (resample to the output rate ->
:func:`prepare_clip` (:func:`trim_silence` -> :func:`denoise` -> :func:`normalize_loudness`) ->
channels) and :func:`conditioning_tail` (what the next clip is conditioned on); :class:`ClipStreamer`
does the same piece by piece for a clip that is still being generated. Block level, on the way to
the sink: equal-power crossfades (:func:`equal_power_gains`, :func:`overlap_frames`, placed by the
player's timeline) -> :class:`BlockProcessor` (high-pass, true-peak limiter). The daemon and the
offline render run both through one :class:`~musicmed_stream.player.deck.Deck`.
"""

from musicmed_stream.chain.block import BlockProcessor, HighPass, TruePeakLimiter, true_peak, true_peak_dbtp
from musicmed_stream.chain.clip import (
    OutputClip,
    as_frames,
    conditioning_tail,
    denoise,
    integrated_loudness,
    match_channels,
    normalize_loudness,
    prepare_clip,
    resample,
    sound_bounds,
    to_output,
    trim_silence,
)
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.chain.crossfade import equal_power_gains, overlap_frames
from musicmed_stream.chain.stream import ClipStreamer, piece_frames, prepare_in_pieces

__all__ = [
    "BlockProcessor",
    "ChainConfig",
    "ClipStreamer",
    "HighPass",
    "OutputClip",
    "TruePeakLimiter",
    "as_frames",
    "conditioning_tail",
    "denoise",
    "equal_power_gains",
    "integrated_loudness",
    "match_channels",
    "normalize_loudness",
    "overlap_frames",
    "piece_frames",
    "prepare_clip",
    "prepare_in_pieces",
    "resample",
    "sound_bounds",
    "to_output",
    "trim_silence",
    "true_peak",
    "true_peak_dbtp",
]
