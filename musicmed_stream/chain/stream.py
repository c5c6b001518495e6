"""The clip-level chain for a clip that is still being generated: piece by piece, as it streams.

A streaming engine (MusicGen) hands over a clip in pieces so that it can start to play before it is
finished. :func:`~musicmed_stream.chain.to_output` needs the whole clip (the loudness of the whole
clip, its trailing silence); :class:`ClipStreamer` does what can be done with the audio so far:
the output's channels (the loudness is measured in them), resampling with soxr's stream
resampler (no seams), trimming the leading silence, the spectral
gate on each piece, and a loudness gain measured on everything so far that glides (linearly, over
a piece) instead of jumping. The loudness is measured again each time the clip has doubled in
length since the last measurement, not at every piece: a 30-s clip in 2-s pieces
is measured over about 60 s of audio instead of 240 s (the soak found the streamed clips four
times slower to prepare than whole ones). Trailing silence is not trimmed: nothing tells it from a pause.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

from musicmed_stream.chain.clip import (
    OutputClip,
    denoise_as,
    integrated_loudness,
    match_channels,
    sound_bounds,
)
from musicmed_stream.chain.config import ChainConfig

_SILENCE_LUFS = -70.0


class ClipStreamer:
    """Prepare a clip's pieces as they arrive; the output matches ``rate`` and ``channels``.

    Parameters
    ----------
    sample_rate : int
        Rate of the engine's pieces.
    rate, channels : int
        Output rate and channel count.
    config : ChainConfig
    """

    def __init__(self, sample_rate: int, rate: int, channels: int, config: ChainConfig) -> None:
        self.sample_rate, self.rate, self.channels, self.config = sample_rate, rate, channels, config
        self._resampler: soxr.ResampleStream | None = None
        self._in_channels = 1
        self._sounding = not config.trim_silence  # leading silence is cut until the first sound
        self._heard: list[np.ndarray] = []  # prepared-but-ungained audio so far, for the loudness
        self._gain: float | None = None
        self._measured = 0  # frames of ``_heard`` at the last loudness measurement
        self.frames = 0  # frames handed out so far
        self.lead_frames = 0  # leading silence cut, at the output rate

    def push(self, piece: np.ndarray) -> np.ndarray:
        """Prepare the next piece; returns float32 ``(frames, channels)`` (possibly empty)."""
        return self._prepare(self._resample(match_channels(piece, self.channels), last=False))

    def close(self) -> np.ndarray:
        """The clip is complete: the resampler's remaining output, prepared."""
        if self._resampler is None:
            return np.zeros((0, self.channels), np.float32)
        return self._prepare(self._resample(np.zeros((0, self._in_channels), np.float32), last=True))

    def _resample(self, data: np.ndarray, last: bool) -> np.ndarray:
        if self.sample_rate == self.rate:
            return data
        if self._resampler is None:
            self._in_channels = data.shape[1]
            self._resampler = soxr.ResampleStream(
                self.sample_rate, self.rate, data.shape[1], dtype="float32", quality="HQ"
            )
        out = self._resampler.resample_chunk(data, last=last)
        return np.asarray(out, dtype=np.float32).reshape(-1, data.shape[1])

    def _prepare(self, data: np.ndarray) -> np.ndarray:
        config = self.config
        if not self._sounding and data.shape[0]:
            start, stop = sound_bounds(data, self.rate, config.trim_threshold_db, config.trim_window_ms)
            if stop == 0:
                self.lead_frames += data.shape[0]
                data = data[:0]
            else:
                self.lead_frames += start
                data, self._sounding = data[start:], True
        if data.shape[0] == 0:
            return np.zeros((0, self.channels), np.float32)
        if config.denoise:
            data = denoise_as(data, self.rate, config)
        if config.normalize:
            data = self._glide(data)
        self.frames += data.shape[0]
        return data

    def _glide(self, data: np.ndarray) -> np.ndarray:
        """Apply the loudness gain measured on everything so far (when it has doubled since the
        last measurement), gliding from the last gain."""
        self._heard.append(data)
        heard = self.frames + data.shape[0]
        if self._gain is not None and heard < 2 * self._measured:
            loudness = math.nan  # not measured again yet: the gain holds
        else:
            self._heard = [np.concatenate(self._heard)]
            loudness = integrated_loudness(self._heard[0], self.rate)
            self._measured = heard
        if math.isfinite(loudness) and loudness >= _SILENCE_LUFS:
            gain_db = min(self.config.target_lufs - loudness, self.config.max_gain_db)
            target = 10.0 ** (gain_db / 20.0)
        else:
            target = self._gain if self._gain is not None else 1.0
        first = target if self._gain is None else self._gain
        ramp = np.linspace(first, target, data.shape[0], dtype=np.float32)[:, None]
        self._gain = target
        return (data * ramp).astype(np.float32)


def prepare_in_pieces(
    audio: np.ndarray, sample_rate: int, rate: int, channels: int, config: ChainConfig, piece_frames: int
) -> OutputClip:
    """A whole clip prepared as if it had streamed in pieces of ``piece_frames``: what
    :class:`ClipStreamer` makes of a streaming engine's pieces, sample for sample, when they are
    these slices. The offline render prepares a program's first clip so, as the daemon plays it."""
    streamer = ClipStreamer(sample_rate, rate, channels, config)
    pieces = [streamer.push(audio[i : i + piece_frames]) for i in range(0, audio.shape[0], piece_frames)]
    pieces.append(streamer.close())
    return OutputClip(np.concatenate(pieces), streamer.lead_frames)


def piece_frames(engine: object) -> int | None:
    """Frames of a streaming engine's pieces (``stream_chunk_seconds`` at its rate), or ``None``
    when the engine does not stream."""
    seconds = getattr(engine, "stream_chunk_seconds", None)
    if not callable(getattr(engine, "stream", None)) or not seconds:
        return None
    return max(round(float(seconds) * int(engine.sample_rate)), 1)  # type: ignore[attr-defined]


__all__ = ["ClipStreamer", "piece_frames", "prepare_in_pieces"]
