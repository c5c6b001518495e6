"""Settings of the audio chain (the ``[chain]`` section): one frozen model, every step switchable."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from musicmed_stream.bounds import CrossfadeFraction, Section


def _range(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Any:
    return Field(
        gt=low if open_low else None,
        ge=None if open_low else low,
        lt=high if open_high else None,
        le=None if open_high else high,
        allow_inf_nan=False,
    )


class ChainConfig(Section):
    """Every setting of the post-processing chain (the method's clip preparation and output stage).

    Clip level (:func:`~musicmed_stream.chain.prepare_clip`): silence trim -> spectral-gating
    denoise -> loudness normalization. Block level
    (:class:`~musicmed_stream.player.deck.Deck`, :class:`~musicmed_stream.chain.BlockProcessor`):
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
    denoise_synthesized : bool
        Gate also the clips of an engine that synthesizes its audio (the built-in engine: no noise
        floor to remove; the gate would only dull its reverb tails, and it is half the chain's time).
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

    section = "chain"

    trim_silence: bool = True
    trim_threshold_db: Annotated[float, _range(-120.0, 0.0, open_high=True)] = -50.0
    trim_window_ms: Annotated[float, _range(0.1, 1000.0)] = 10.0
    normalize: bool = True
    target_lufs: Annotated[float, _range(-70.0, 0.0)] = -20.0
    max_gain_db: Annotated[float, _range(0.0, 60.0)] = 30.0
    crossfade_fraction: CrossfadeFraction = 0.25
    highpass: bool = True
    highpass_hz: Annotated[float, _range(1.0, 1000.0)] = 35.0
    highpass_order: Annotated[int, Field(ge=1, le=12)] = 4
    denoise: bool = True
    denoise_synthesized: bool = False
    denoise_stationary: bool = True
    denoise_prop_decrease: Annotated[float, _range(0.0, 1.0)] = 0.5
    denoise_n_fft: Annotated[int, Field(ge=256, le=16384)] = 2048
    denoise_n_std_thresh: Annotated[float, _range(0.0, 10.0, open_low=True)] = 1.5
    denoise_freq_smooth_hz: Annotated[float, _range(0.0, 5000.0)] = 0.0
    denoise_noise_quantile: Annotated[float, _range(0.0, 1.0, open_low=True)] = 0.2
    limiter: bool = True
    ceiling_dbtp: Annotated[float, _range(-20.0, 0.0)] = -1.0
    limiter_lookahead_ms: Annotated[float, _range(0.5, 50.0)] = 3.0
    limiter_release_db_per_s: Annotated[float, _range(1.0, 1000.0)] = 60.0
    tail_seconds: Annotated[float, _range(0.0, 60.0)] = 10.0

    def for_engine(self, engine: object) -> ChainConfig:
        """The settings for ``engine``'s clips: a synthesizing engine's (``synthesized = True``)
        are not gated unless ``denoise_synthesized``."""
        if self.denoise and getattr(engine, "synthesized", False) and not self.denoise_synthesized:
            return self.model_copy(update={"denoise": False})
        return self

    @field_validator("denoise_n_fft")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value
