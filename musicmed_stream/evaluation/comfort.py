"""Listening comfort: loudness, loudness range, loudness steps, true peak, clipping, gaps, clicks.

Everything here is a pure function of float audio shaped ``(frames,)`` or ``(frames, channels)``.
Integrated loudness (ITU-R BS.1770, pyloudnorm) and the 4x-oversampled true peak are measured with
the audio chain's own meters (:mod:`musicmed_stream.chain`), so the evaluation checks the chain's
targets in the chain's units; the loudness range follows EBU Tech 3342 (short-term
loudness in 3-s windows, absolute gate -70 LUFS, relative gate -20 LU, 10th to 95th percentile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyloudnorm
import scipy.ndimage
import scipy.signal

from musicmed_stream.chain import integrated_loudness, true_peak_dbtp

SHORT_TERM_S = 3.0
SHORT_TERM_STEP_S = 0.3
ABSOLUTE_GATE_LUFS = -70.0
LRA_RELATIVE_GATE_LU = -20.0
LPC_ORDER = 16


def _as_2d(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    return audio[:, None] if audio.ndim == 1 else audio


def _mono(audio: np.ndarray) -> np.ndarray:
    return _as_2d(audio).mean(axis=1)


def short_term_loudness(audio: np.ndarray, sample_rate: int, step_s: float = SHORT_TERM_STEP_S) -> np.ndarray:
    """Short-term loudness (3-s K-weighted windows, ungated) every ``step_s`` seconds, in LUFS.

    Returns an array of shape ``(n_windows, 2)``: window centre time in seconds and loudness.
    Audio shorter than one window gives a single window over the whole signal.
    """
    audio = _as_2d(audio)
    window_s = min(SHORT_TERM_S, audio.shape[0] / sample_rate)
    if window_s < 0.05:
        return np.empty((0, 2))
    # pyloudnorm's meter with a 3-s block exposes the per-block loudness it gates; that is exactly
    # the EBU short-term loudness series.
    meter = pyloudnorm.Meter(sample_rate, block_size=window_s, overlap=1.0 - min(step_s / window_s, 1.0))
    with np.errstate(divide="ignore"):
        meter.integrated_loudness(audio)
    values = np.asarray(meter.blockwise_loudness, dtype=np.float64)
    hop = window_s * (1.0 - meter.overlap)
    times = window_s / 2 + hop * np.arange(values.size)
    return np.column_stack([times, values])


def loudness_range(short_term_lufs: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LU) from a short-term loudness series; ``nan`` if all gated out."""
    values = np.asarray(short_term_lufs, dtype=np.float64)
    values = values[np.isfinite(values) & (values > ABSOLUTE_GATE_LUFS)]
    if values.size == 0:
        return float("nan")
    mean_power = np.mean(10.0 ** (values / 10.0))
    relative_gate = 10.0 * np.log10(mean_power) + LRA_RELATIVE_GATE_LU
    gated = values[values > relative_gate]
    return float(np.percentile(gated, 95) - np.percentile(gated, 10))


def loudness_steps(clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """Integrated loudness difference (LU) from each clip to the next; ``nan`` where one is silent."""
    levels = np.array([integrated_loudness(c, sample_rate) for c in clips])
    with np.errstate(invalid="ignore"):
        steps = np.diff(levels)
    steps[~np.isfinite(steps)] = np.nan
    return steps


def clipped_samples(audio: np.ndarray, threshold: float = 0.9999) -> int:
    """Number of samples (over all channels) at or beyond digital full scale."""
    return int(np.count_nonzero(np.abs(np.asarray(audio)) >= threshold))


def silent_gaps(
    audio: np.ndarray,
    sample_rate: int,
    threshold_db: float = -60.0,
    min_gap_s: float = 1.0,
    frame_s: float = 0.05,
) -> list[tuple[float, float]]:
    """Stretches ``(start_s, end_s)`` of ``min_gap_s`` or more with frame RMS below ``threshold_db`` dBFS."""
    mono = _mono(audio)
    frame = max(int(frame_s * sample_rate), 1)
    n = mono.size // frame
    if n == 0:
        return []
    rms = np.sqrt(np.mean(mono[: n * frame].reshape(n, frame) ** 2, axis=1))
    quiet = rms < 10.0 ** (threshold_db / 20.0)
    labels, count = scipy.ndimage.label(quiet)
    gaps = []
    for region in scipy.ndimage.find_objects(labels)[:count]:
        start, stop = region[0].start * frame_s, region[0].stop * frame_s
        if stop - start >= min_gap_s:
            gaps.append((round(start, 3), round(stop, 3)))
    return gaps


def prediction_residual(mono: np.ndarray, order: int = LPC_ORDER, frame: int = 2048) -> np.ndarray:
    """Linear-prediction error of ``mono`` with an order-``order`` LPC model fitted per frame.

    Music is well predicted from its recent past; a discontinuity is not, so it stands out in the
    residual even when the music itself is loud and bright (Vaseghi & Rayner's click detector).
    The predictor uses the autocorrelation method (Hann window, Levinson via
    ``scipy.linalg.solve_toeplitz``) with white-noise correction of ``r[0]`` (a -50 dB floor), which
    keeps it stable on pure tones where Burg's method diverges.
    """
    import scipy.linalg

    residual = np.zeros_like(mono)
    n_frames = -(-mono.size // frame)
    frames = np.zeros((n_frames, frame))
    frames.reshape(-1)[: mono.size] = mono
    spectrum = np.fft.rfft(frames * scipy.signal.get_window("hann", frame), n=2 * frame, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : order + 1]
    for index in range(n_frames):
        r = autocorr[index]
        if r[0] <= 1e-12:
            continue
        r = r.copy()
        r[0] *= 1.0 + 1e-5
        coeffs = np.concatenate([[1.0], scipy.linalg.solve_toeplitz(r[:order], -r[1 : order + 1])])
        start = index * frame
        stop = min(start + frame, mono.size)
        # Filter from ``order`` samples earlier, so each frame's first samples are predicted too.
        history = mono[max(start - order, 0) : stop]
        residual[start:stop] = scipy.signal.lfilter(coeffs, [1.0], history)[-(stop - start) :]
    residual[:order] = 0.0  # no history to predict the very first samples from
    return residual


def _shifted_block_stat(values: np.ndarray, half: int, stat: str) -> tuple[np.ndarray, np.ndarray]:
    """Median or mean of ``values`` over the ``2*half+1`` blocks strictly before / after each block."""
    size = 2 * half + 1
    if stat == "median":
        centred = scipy.ndimage.median_filter(values, size=size, mode="nearest")
    else:
        centred = scipy.ndimage.uniform_filter1d(values, size=size, mode="nearest")
    padded = np.pad(centred, half + 1, mode="edge")
    return padded[: values.size], padded[2 * half + 2 :]


def detect_clicks(
    audio: np.ndarray,
    sample_rate: int,
    ratio: float = 10.0,
    floor: float = 0.003,
    onset_db: float = 6.0,
    block_s: float = 0.005,
    context_s: float = 0.05,
    merge_s: float = 0.01,
) -> np.ndarray:
    """Times (s) of clicks: isolated outliers of the linear-prediction residual relative to the local level.

    The local level of a 5-ms block is the larger of the median residual RMS of the blocks within
    ``context_s`` strictly before and strictly after it. A block holds a click when its residual
    peak exceeds ``ratio`` times that level and the absolute ``floor``, and the music around it does
    not get louder by ``onset_db`` or more across it: a note attacking out of quiet is as
    unpredictable as a click, but a click at a crossfade sits in music of steady level.
    """
    mono = _mono(audio)
    block = max(int(block_s * sample_rate), 1)
    n_blocks = mono.size // block
    if n_blocks < 3:
        return np.empty(0)
    residual = np.abs(prediction_residual(mono))
    blocks = residual[: n_blocks * block].reshape(n_blocks, block)
    block_peak = blocks.max(axis=1)
    half = max(int(context_s / block_s) // 2, 1)
    before, after = _shifted_block_stat(np.sqrt(np.mean(blocks**2, axis=1)), half, "median")
    # The block's own level without the peak and the spread the prediction filter gives it: a
    # click is a lone spike, a noise burst (a drum hit) is busy throughout its block.
    peak_at = blocks.argmax(axis=1)
    cumulative = np.concatenate([np.zeros((n_blocks, 1)), np.cumsum(blocks**2, axis=1)], axis=1)
    lo, hi = np.maximum(peak_at - LPC_ORDER, 0), np.minimum(peak_at + LPC_ORDER + 1, block)
    rows = np.arange(n_blocks)
    rest = cumulative[:, -1] - (cumulative[rows, hi] - cumulative[rows, lo])
    own = np.sqrt(np.maximum(rest, 0.0) / np.maximum(block - (hi - lo), 1))
    level = np.maximum.reduce([before, after, own, np.full(n_blocks, 1e-9)])
    # Level of the first difference (no DC, like the ear): a step is one sample of it, an onset many.
    slope = np.diff(mono, prepend=mono[0])
    signal_energy = np.mean(slope[: n_blocks * block].reshape(n_blocks, block) ** 2, axis=1)
    energy_before, energy_after = _shifted_block_stat(signal_energy, 2, "mean")
    onset = energy_after > (energy_before + 1e-12) * 10.0 ** (onset_db / 10.0)
    flagged = np.flatnonzero((block_peak > ratio * level) & (block_peak > floor) & ~onset)
    if flagged.size == 0:
        return np.empty(0)
    times = (flagged * block + peak_at[flagged]) / sample_rate
    keep = np.concatenate([[True], np.diff(times) > merge_s])
    return times[keep]


@dataclass(frozen=True)
class ComfortReport:
    """Listening-comfort figures of one session recording."""

    integrated_lufs: float
    loudness_range_lu: float
    max_loudness_step_lu: float
    loudness_steps_lu: list[float]
    true_peak_dbtp: float
    clipped_samples: int
    silent_gaps: list[tuple[float, float]]
    clicks_s: list[float]
    clicks_at_boundaries: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def comfort_report(
    session: np.ndarray,
    sample_rate: int,
    boundaries_s: Sequence[tuple[float, float]] = (),
    boundary_tolerance_s: float = 0.05,
) -> tuple[ComfortReport, np.ndarray]:
    """All comfort figures of ``session``; ``boundaries_s`` are each clip's (start, end) in the session.

    Returns the report and the short-term loudness series (for the loudness-over-time plot).
    """
    short_term = short_term_loudness(session, sample_rate)
    clips = [session[int(a * sample_rate) : int(b * sample_rate)] for a, b in boundaries_s]
    steps = loudness_steps(clips, sample_rate) if len(clips) > 1 else np.empty(0)
    clicks = detect_clicks(session, sample_rate)
    # A click "at a crossfade" lies where clip i hands over to clip i+1 (start of i+1 .. end of i).
    joins = [(boundaries_s[i + 1][0], boundaries_s[i][1]) for i in range(len(boundaries_s) - 1)]
    at_joins = sum(
        any(lo - boundary_tolerance_s <= t <= hi + boundary_tolerance_s for lo, hi in joins) for t in clicks
    )
    finite_steps = np.abs(steps[np.isfinite(steps)])
    report = ComfortReport(
        integrated_lufs=integrated_loudness(session, sample_rate),
        loudness_range_lu=loudness_range(short_term[:, 1]) if short_term.size else float("nan"),
        max_loudness_step_lu=float(finite_steps.max()) if finite_steps.size else float("nan"),
        loudness_steps_lu=[float(s) for s in steps],
        true_peak_dbtp=true_peak_dbtp(session),
        clipped_samples=clipped_samples(session),
        silent_gaps=silent_gaps(session, sample_rate),
        clicks_s=[round(float(t), 4) for t in clicks],
        clicks_at_boundaries=int(at_joins),
    )
    return report, short_term
