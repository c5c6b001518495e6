"""Settings of the audio chain: one frozen dataclass, every step switchable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from musicmed_stream.errors import ConfigError

# key -> (low, high, low inclusive, high inclusive); keys absent here are booleans.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "trim_threshold_db": (-120.0, 0.0, True, False),
    "trim_window_ms": (0.1, 1000.0, True, True),
    "target_lufs": (-70.0, 0.0, True, True),
    "max_gain_db": (0.0, 60.0, True, True),
    "crossfade_fraction": (0.0, 0.5, True, True),
    "highpass_hz": (1.0, 1000.0, True, True),
    "highpass_order": (1, 12, True, True),
    "denoise_prop_decrease": (0.0, 1.0, True, True),
    "denoise_n_fft": (256, 16384, True, True),
    "denoise_n_std_thresh": (0.0, 10.0, False, True),
    "denoise_freq_smooth_hz": (0.0, 5000.0, True, True),
    "denoise_noise_quantile": (0.0, 1.0, False, True),
    "ceiling_dbtp": (-20.0, 0.0, True, True),
    "limiter_lookahead_ms": (0.5, 50.0, True, True),
    "limiter_release_db_per_s": (1.0, 1000.0, True, True),
    "tail_seconds": (0.0, 60.0, True, True),
}


@dataclass(frozen=True)
class ChainConfig:
    """Every setting of the post-processing chain (the method's clip preparation and output stage).

    Clip level (:func:`~musicmed_stream.chain.prepare_clip`): silence trim -> spectral-gating
    denoise -> loudness normalization. Block level
    (:class:`~musicmed_stream.chain.Crossfader`, :class:`~musicmed_stream.chain.BlockProcessor`):
    equal-power crossfade -> high-pass -> true-peak limiter.

    Attributes
    ----------
    trim_silence : bool
        Cut leading and trailing silence from each clip.
    trim_threshold_db : float
        A window is silent when its RMS (loudest channel) is below this level, dBFS.
    trim_window_ms : float
        Length of the RMS windows of the silence detector.
    normalize : bool
        Normalize each clip's integrated loudness (ITU-R BS.1770, pyloudnorm).
    target_lufs : float
        Integrated loudness each clip is brought to.
    max_gain_db : float
        Largest gain normalization may apply, so near-silent clips are not blown up.
    crossfade_fraction : float
        Overlap between consecutive clips as a fraction of the shorter clip (equal-power curves).
    highpass : bool
        Remove sub-sonic rumble and DC with a Butterworth high-pass (state carried across blocks).
    highpass_hz, highpass_order : float, int
        Cutoff and order of the high-pass.
    denoise : bool
        Spectral-gating noise reduction of each clip (noisereduce).
    denoise_stationary : bool
        Stationary gating (noise statistics of the whole clip; fast) or non-stationary.
    denoise_prop_decrease : float
        How far gated bins are lowered: 0 leaves them, 1 removes them. Gentle by default.
    denoise_n_fft : int
        STFT size of the gate (hop is half of it).
    denoise_n_std_thresh : float
        Stationary gate threshold, in standard deviations above the mean level of each bin.
    denoise_freq_smooth_hz : float
        Width of the frequency smoothing of the gate mask (0 disables it).
    denoise_noise_quantile : float
        Fraction of the clip (its quietest windows) the stationary noise floor is estimated from;
        1 uses the whole clip (noisereduce's default, which gates sustained notes).
    limiter : bool
        Look-ahead true-peak limiter at the end of the chain.
    ceiling_dbtp : float
        Ceiling of the limiter in dBTP (true peak, 4x oversampled); no sample exceeds it either.
    limiter_lookahead_ms : float
        Attack ramp of the limiter (look-ahead).
    limiter_release_db_per_s : float
        How fast the gain recovers after a peak.
    tail_seconds : float
        Length of the silence-trimmed end of a clip handed to the engine for the next clip.
    """

    trim_silence: bool = True
    trim_threshold_db: float = -50.0
    trim_window_ms: float = 10.0
    normalize: bool = True
    target_lufs: float = -20.0
    max_gain_db: float = 30.0
    crossfade_fraction: float = 0.25
    highpass: bool = True
    highpass_hz: float = 35.0
    highpass_order: int = 4
    denoise: bool = True
    denoise_stationary: bool = True
    denoise_prop_decrease: float = 0.5
    denoise_n_fft: int = 2048
    denoise_n_std_thresh: float = 1.5
    denoise_freq_smooth_hz: float = 0.0
    denoise_noise_quantile: float = 0.2
    limiter: bool = True
    ceiling_dbtp: float = -1.0
    limiter_lookahead_ms: float = 3.0
    limiter_release_db_per_s: float = 60.0
    tail_seconds: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_value(f.name, getattr(self, f.name), f.default)
        if self.denoise_n_fft & (self.denoise_n_fft - 1):
            n_fft = self.denoise_n_fft
            raise ConfigError(f"chain setting 'denoise_n_fft' must be a power of two, got {n_fft}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ChainConfig:
        """Build from a mapping (e.g. the ``[chain]`` table of config.toml); missing keys keep defaults.

        Raises
        ------
        ConfigError
            For an unknown key, a value of the wrong type or out of range; the message names the key.
        """
        data = dict(data or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown chain setting {unknown[0]!r}; known settings: {', '.join(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_value(key: str, value: Any, default: Any) -> None:
    """Type and range check of one setting; ``default`` gives the expected type."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"chain setting {key!r} must be true or false, got {value!r}")
        return
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"chain setting {key!r} must be an integer, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"chain setting {key!r} must be a finite number, got {value!r}")
    low, high, low_incl, high_incl = _RANGES[key]
    too_low = value < low if low_incl else value <= low
    too_high = value > high if high_incl else value >= high
    if too_low or too_high:
        lo, hi = ("[" if low_incl else "("), ("]" if high_incl else ")")
        raise ConfigError(f"chain setting {key!r} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")
