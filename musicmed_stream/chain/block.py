"""Block-level steps on the way to the sink: high-pass and true-peak limiter, state kept across blocks.

Both give bit-identical output whatever the block sizes: the high-pass carries its ``sosfilt``
state, and every value of the limiter is computed on a grid of fixed 32-frame chunks counted from
the start of the stream, from the same samples in the same order, however the stream is cut.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import scipy.signal

from musicmed_stream.chain.clip import as_frames
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.errors import AudioError, ConfigError

_CHUNK = 32  # frames per gain control point of the limiter
_OVERSAMPLE = 4  # true peak per ITU-R BS.1770-4: 4x oversampling
_HALF_TAPS = 10  # interpolation reaches 10 input samples each side
# The detector aims this far below the ceiling: the gain changes within the interpolation
# filter's reach, so the true peak of gain * signal is not exactly gain * true peak of signal.
_MARGIN_DB = 0.1


def _interpolation_taps() -> np.ndarray:
    """Taps of the 4x interpolator, shape ``(3, 20)``.

    The values between ``x[n]`` and ``x[n + 1]``, at ``n + p/4`` for p = 1, 2, 3, are
    ``sum_d taps[p - 1, d] * x[n - 9 + d]``; the filter is the one ``scipy.signal.resample_poly``
    designs for ``up=4`` (Kaiser-windowed sinc, beta 5), so both measure the same true peak.
    """
    half_len = _HALF_TAPS * _OVERSAMPLE
    h = scipy.signal.firwin(2 * half_len + 1, 1.0 / _OVERSAMPLE, window=("kaiser", 5.0)) * _OVERSAMPLE
    d = np.arange(-(_HALF_TAPS - 1), _HALF_TAPS + 1)
    return np.stack([h[half_len + p - _OVERSAMPLE * d] for p in range(1, _OVERSAMPLE)])


_TAPS = _interpolation_taps()
# No interpolated value can exceed this multiple of the largest sample it is made from.
_TAPS_BOUND = float(np.abs(_TAPS).sum(axis=1).max())


def true_peak(audio: np.ndarray, block_frames: int = 1 << 20) -> float:
    """Linear true peak: the largest magnitude of the 4x oversampled signal (scipy ``resample_poly``).

    Long signals are measured in overlapping windows so memory stays bounded.
    """
    data = as_frames(audio).astype(np.float64)
    n = data.shape[0]
    if n == 0:
        return 0.0
    margin = 4 * _HALF_TAPS
    peak = 0.0
    for start in range(0, n, block_frames):
        lo, hi = max(0, start - margin), min(n, start + block_frames + margin)
        up = scipy.signal.resample_poly(data[lo:hi], _OVERSAMPLE, 1, axis=0)
        keep = up[(start - lo) * _OVERSAMPLE : (min(n, start + block_frames) - lo) * _OVERSAMPLE]
        peak = max(peak, float(np.abs(keep).max()))
    return peak


def true_peak_dbtp(audio: np.ndarray) -> float:
    """True peak in dBTP (``-inf`` for silence)."""
    peak = true_peak(audio)
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


class HighPass:
    """Butterworth high-pass (second-order sections) whose filter state runs on from block to block."""

    def __init__(self, sample_rate: int, channels: int, cutoff_hz: float = 35.0, order: int = 4) -> None:
        if not 0 < cutoff_hz < sample_rate / 2:
            raise ConfigError(f"chain setting 'highpass_hz' must be below {sample_rate / 2:g} Hz")
        self.channels = channels
        self._sos = scipy.signal.butter(order, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")
        self.reset()

    def reset(self) -> None:
        self._zi = np.zeros((self._sos.shape[0], 2, self.channels))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Filter one float64 ``(frames, channels)`` block."""
        out, self._zi = scipy.signal.sosfilt(self._sos, block, axis=0, zi=self._zi)
        return out


class TruePeakLimiter:
    """Look-ahead brick-wall limiter that holds a true-peak ceiling.

    Detector: for every 32-frame chunk, the largest magnitude of the 4x oversampled signal (the
    interpolation is only computed where the samples could reach the ceiling at all). Gain: per
    chunk, the ceiling over that detector, taken over the chunk and its neighbours; a linear-in-dB
    attack ramp over the look-ahead so the gain is already down when a peak arrives; a release
    of ``release_db_per_s``; linear interpolation between chunks. Every sample is finally held
    within the ceiling, so the sample peak holds even where rounding would nudge it.

    Output is delayed by :attr:`latency` frames (zeros at the start). ``dtype`` is the precision
    of the samples (input, buffer, interpolation, output; the per-chunk gains are float64):
    float32 needs a quarter less time and moves samples by less than 1e-6 of their value (a few
    float32 ulps; the ceiling is rounded down, so it holds).
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        ceiling_dbtp: float = -1.0,
        lookahead_ms: float = 3.0,
        release_db_per_s: float = 60.0,
        dtype: type = np.float64,
    ) -> None:
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self.ceiling = 10.0 ** (ceiling_dbtp / 20.0)
        # The ceiling in the samples' precision, rounded down so that it still holds.
        self._clip_at = self.dtype.type(self.ceiling)
        if self._clip_at > self.ceiling:
            self._clip_at = np.nextafter(self._clip_at, self.dtype.type(0))
        self._target = 10.0 ** ((ceiling_dbtp - _MARGIN_DB) / 20.0)
        self._k = max(1, round(lookahead_ms * sample_rate / 1000.0 / _CHUNK))
        self._ramp = 1.0 - np.arange(self._k + 1) / (self._k + 1)
        self._release = release_db_per_s * _CHUNK / sample_rate  # dB per chunk
        self._frac = np.arange(_CHUNK) / _CHUNK
        self.latency = (self._k + 4) * _CHUNK
        self.reset()

    def reset(self) -> None:
        """Forget all state (a new stream starts)."""
        self._x = np.zeros((_CHUNK, self.channels), self.dtype)  # chunk -1 is silence
        self._x0 = -_CHUNK  # stream index of self._x[0]
        self._received = 0
        self._rq = np.ones(1)  # per-chunk gain limits, from chunk self._rq0
        self._rq0 = -1
        self._rq_next = 0
        self._t_db = np.zeros(0)  # limits over neighbouring chunks, dB, from chunk self._t0
        self._t0 = 0
        self._gain = np.zeros(0)  # chunk gains, from chunk self._g0
        self._g0 = 0
        self._run = self._release  # release state: gain -1 is 0 dB
        self._out = -self.latency  # stream index of the next output frame

    def process(self, block: np.ndarray) -> np.ndarray:
        """Limit one ``(frames, channels)`` block; returns the block ``latency`` frames earlier, in
        :attr:`dtype`."""
        n = block.shape[0]
        self._x = np.concatenate([self._x, block.astype(self.dtype, copy=False)], axis=0)
        self._received += n
        self._update_limits()
        self._update_gains()
        lo, hi = max(self._out, 0), self._out + n
        out = np.zeros((n, self.channels), self.dtype)
        if hi > lo:
            # Gains of the chunks [c_lo, c_hi), interpolated linearly towards the next chunk's.
            c_lo, c_hi = lo // _CHUNK, (hi - 1) // _CHUNK + 1
            g = self._gain[c_lo - self._g0 : c_hi + 1 - self._g0]
            if g.min() == 1.0:
                # Nothing near the ceiling: a gain of exactly 1 leaves every sample as it is, and
                # every sample lies below the ceiling (its chunk's limit is 1), so no clip either.
                out[lo - self._out :] = self._x[lo - self._x0 : hi - self._x0]
                self._out = hi
                self._trim()
                return out
            ramp = g[:-1, None] + (g[1:] - g[:-1])[:, None] * self._frac[None, :]
            gain = ramp.reshape(-1)[lo - c_lo * _CHUNK : hi - c_lo * _CHUNK].astype(self.dtype)
            y = out[lo - self._out :]
            np.multiply(self._x[lo - self._x0 : hi - self._x0], gain[:, None], out=y)
            np.clip(y, -self._clip_at, self._clip_at, out=y)
        self._out = hi
        self._trim()
        return out

    def _update_limits(self) -> None:
        """Per-chunk gain limits for every chunk whose neighbourhood has fully arrived."""
        c_a, c_b = self._rq_next, self._received // _CHUNK - 1
        if c_b <= c_a:
            return
        m = c_b - c_a + 2  # chunks c_a - 1 .. c_b
        seg = self._x[(c_a - 1) * _CHUNK - self._x0 : (c_b + 1) * _CHUNK - self._x0]
        peak = np.abs(seg).reshape(m, _CHUNK, self.channels).max(axis=(1, 2))
        near = np.maximum(np.maximum(peak[:-2], peak[1:-1]), peak[2:])
        limits = np.ones(c_b - c_a)
        candidates = np.flatnonzero(near * _TAPS_BOUND > self._target)
        if candidates.size:
            idx = ((candidates + 1) * _CHUNK)[:, None] + np.arange(_CHUNK)[None, :]
            env = np.abs(seg[idx]).max(axis=-1)
            for taps in _TAPS.astype(self.dtype):
                acc = np.zeros((*idx.shape, self.channels), self.dtype)
                for d, tap in enumerate(taps):
                    acc += tap * seg[idx + (d - _HALF_TAPS + 1)]
                env = np.maximum(env, np.abs(acc).max(axis=-1))
            limits[candidates] = np.minimum(1.0, self._target / np.maximum(env.max(axis=1), 1e-30))
        self._rq = np.concatenate([self._rq, limits])
        self._rq_next = c_b

    def _update_gains(self) -> None:
        """Neighbourhood minimum, attack ramp and release for every chunk whose look-ahead is known."""
        c_a, c_b = self._t0 + self._t_db.size, self._rq_next - 1
        if c_b > c_a:
            r = self._rq[c_a - 1 - self._rq0 : c_b + 1 - self._rq0]
            t = np.minimum(np.minimum(r[:-2], r[1:-1]), r[2:])
            self._t_db = np.concatenate([self._t_db, 20.0 * np.log10(t)])
        c_a, c_b = self._g0 + self._gain.size, self._t0 + self._t_db.size - self._k
        if c_b <= c_a:
            return
        t_db = self._t_db[c_a - self._t0 : c_b + self._k - self._t0]
        count = c_b - c_a
        attack = t_db[:count].copy()
        for d in range(1, self._k + 1):
            np.minimum(attack, t_db[d : d + count] * self._ramp[d], out=attack)
        # Release: gain_db[c] = min(attack[c], gain_db[c - 1] + release), unrolled as a running
        # minimum over stream chunk indices so it does not depend on how blocks were cut.
        index = np.arange(c_a, c_b, dtype=np.float64) * self._release
        run = np.minimum.accumulate(np.concatenate([[self._run], attack - index]))[1:]
        self._run = float(run[-1])
        self._gain = np.concatenate([self._gain, 10.0 ** ((index + run) / 20.0)])

    def _trim(self) -> None:
        """Drop what no later block needs."""
        keep_chunk = max(self._out, 0) // _CHUNK
        if keep_chunk > self._g0:
            self._gain = self._gain[keep_chunk - self._g0 :]
            self._g0 = keep_chunk
        next_gain = self._g0 + self._gain.size
        if next_gain > self._t0:
            self._t_db = self._t_db[next_gain - self._t0 :]
            self._t0 = next_gain
        next_t = self._t0 + self._t_db.size
        if next_t - 1 > self._rq0:
            self._rq = self._rq[next_t - 1 - self._rq0 :]
            self._rq0 = next_t - 1
        keep_frame = min(max(self._out, 0), (self._rq_next - 1) * _CHUNK)
        if keep_frame > self._x0:
            self._x = self._x[keep_frame - self._x0 :]
            self._x0 = keep_frame


class BlockProcessor:
    """The block-level half of the chain: high-pass -> true-peak limiter, with state.

    Feed it the crossfaded stream block by block; any block size, same output. The limiter
    delays the stream by :attr:`latency` frames; :meth:`flush` returns the last ones.

    Parameters
    ----------
    sample_rate, channels : int
        Of the stream.
    config : ChainConfig
        ``highpass*`` and ``limiter*``/``ceiling_dbtp`` settings are used.
    """

    def __init__(self, sample_rate: int, channels: int, config: ChainConfig | None = None) -> None:
        config = config or ChainConfig()
        if channels < 1:
            raise AudioError(f"channels must be >= 1, got {channels}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.config = config
        self._highpass = (
            HighPass(sample_rate, channels, config.highpass_hz, config.highpass_order)
            if config.highpass
            else None
        )
        self._limiter = (
            TruePeakLimiter(
                sample_rate,
                channels,
                config.ceiling_dbtp,
                config.limiter_lookahead_ms,
                config.limiter_release_db_per_s,
                dtype=np.float32,  # the output is float32 anyway; see TruePeakLimiter
            )
            if config.limiter
            else None
        )

    @property
    def latency(self) -> int:
        """Frames by which output lags input (the limiter's look-ahead)."""
        return self._limiter.latency if self._limiter else 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Process one ``(frames, channels)`` block; returns float32 of the same shape."""
        data = as_frames(block)
        if data.shape[1] != self.channels:
            raise AudioError(f"block has {data.shape[1]} channels, the processor {self.channels}")
        if data.shape[0] == 0:
            return data.copy()
        x = data.astype(np.float64)  # the high-pass's recursion runs in float64
        if self._highpass is not None:
            x = self._highpass.process(x)
        if self._limiter is not None:
            x = self._limiter.process(x)
        return x.astype(np.float32, copy=False)

    def snapshot(self) -> tuple[Any, Any]:
        """The filters' state, to :meth:`restore` later (the player takes back audio that was
        processed but not yet heard, so that a command is heard sooner)."""
        return copy.deepcopy(self._highpass), copy.deepcopy(self._limiter)

    def restore(self, state: tuple[Any, Any]) -> None:
        """Go back to a :meth:`snapshot` (the snapshot itself stays usable)."""
        self._highpass, self._limiter = copy.deepcopy(state)

    def flush(self) -> np.ndarray:
        """The last :attr:`latency` frames still inside the limiter (feeds silence)."""
        return self.process(np.zeros((self.latency, self.channels), dtype=np.float32))

    def reset(self) -> None:
        if self._highpass is not None:
            self._highpass.reset()
        if self._limiter is not None:
            self._limiter.reset()
