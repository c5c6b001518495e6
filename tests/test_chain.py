"""Audio chain: config, clip-level steps (whole and streamed), block processor."""

from __future__ import annotations

import math

import noisereduce
import numpy as np
import pyloudnorm
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.chain import (
    BlockProcessor,
    ChainConfig,
    TruePeakLimiter,
    conditioning_tail,
    denoise,
    equal_power_gains,
    integrated_loudness,
    normalize_loudness,
    prepare_clip,
    resample,
    sound_bounds,
    to_output,
    trim_silence,
    true_peak_dbtp,
)
from musicmed_stream.chain.clip import noise_reference
from musicmed_stream.errors import AudioError, ConfigError

SR = 44100
FAST = settings(max_examples=25, deadline=None)
BLOCK_ONLY = ChainConfig(trim_silence=False, normalize=False, denoise=False)


def tone(freq: float, seconds: float, amp: float = 0.5, channels: int = 2, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1).astype(np.float32)


def noise(seconds: float, amp: float, seed: int, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal((round(seconds * SR), channels))).astype(np.float32)


def music_like(seconds: float, seed: int, amp: float = 0.2) -> np.ndarray:
    """A few decaying partials plus a little noise: enough spectral structure for the chain."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    for start in np.arange(0.0, seconds, 0.5):
        f0 = rng.choice([220.0, 261.6, 329.6, 392.0])
        env = np.where(t >= start, np.exp(-(t - start) * 3.0), 0.0)
        out += env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    out = amp * out / np.abs(out).max() + 0.002 * rng.standard_normal(n)
    return np.stack([out, np.roll(out, 7)], axis=1).astype(np.float32)


def band_power(x: np.ndarray, lo: float, hi: float) -> float:
    freqs, psd = scipy.signal.welch(x[:, 0], SR, nperseg=4096)
    band = (freqs >= lo) & (freqs < hi)
    return float(psd[band].sum())


def run_blocks(proc: BlockProcessor, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, pos = [], 0
    for size in sizes:
        out.append(proc.process(x[pos : pos + size]))
        pos += size
    out.append(proc.process(x[pos:]))
    out.append(proc.flush())
    return np.concatenate(out)[proc.latency :]


# --- config -----------------------------------------------------------------------------------


def test_config_round_trip_and_errors_name_the_key():
    config = ChainConfig.from_dict({"target_lufs": -23.0, "denoise": False})
    assert config.target_lufs == -23.0 and config.denoise is False
    assert ChainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown key chain\.crossfade_fractoin"):
        ChainConfig.from_dict({"crossfade_fractoin": 0.25})
    with pytest.raises(ConfigError, match=r"chain\.crossfade_fraction = 0\.9"):
        ChainConfig.from_dict({"crossfade_fraction": 0.9})
    with pytest.raises(ConfigError, match=r"chain\.ceiling_dbtp = 3\.0"):
        ChainConfig.from_dict({"ceiling_dbtp": 3.0})
    with pytest.raises(ConfigError, match=r"chain\.highpass = 'yes'"):
        ChainConfig.from_dict({"highpass": "yes"})
    with pytest.raises(ConfigError, match=r"chain\.highpass_order = 2\.5"):
        ChainConfig.from_dict({"highpass_order": 2.5})
    with pytest.raises(ConfigError, match=r"chain\.denoise_n_fft = 1000: must be a power of two"):
        ChainConfig.from_dict({"denoise_n_fft": 1000})
    with pytest.raises(ConfigError, match=r"chain\.target_lufs = '-20'"):  # strict: text is not a number
        ChainConfig.from_dict({"target_lufs": "-20"})


# --- clip level -------------------------------------------------------------------------------


def test_trim_removes_leading_and_trailing_silence():
    body = tone(440.0, 1.0)
    clip = np.concatenate([np.zeros((SR, 2), np.float32), body, np.zeros((SR // 2, 2), np.float32)])
    trimmed = trim_silence(clip, SR, threshold_db=-50.0, window_ms=10.0)
    window = round(SR * 0.01)
    assert abs(trimmed.shape[0] - body.shape[0]) <= 2 * window
    assert np.abs(trimmed[: window // 2]).max() > 0.1  # starts with sound, not silence
    assert trim_silence(np.zeros((SR, 2), np.float32), SR).shape == (0, 2)


def test_conditioning_tail_is_the_trimmed_end():
    clip = np.concatenate([tone(330.0, 3.0), np.zeros((SR, 2), np.float32)])
    tail = conditioning_tail(clip, SR, ChainConfig(tail_seconds=1.0))
    assert tail.shape == (SR, 2)
    trimmed = trim_silence(clip, SR)
    np.testing.assert_array_equal(tail, trimmed[-SR:])


@settings(max_examples=15, deadline=None)
@given(level_db=st.floats(-40.0, 6.0), target=st.floats(-30.0, -14.0), seed=st.integers(0, 1000))
def test_normalize_reaches_target_loudness(level_db, target, seed):
    clip = music_like(2.0, seed, amp=10.0 ** (level_db / 20.0))
    out = normalize_loudness(clip, SR, target_lufs=target, max_gain_db=60.0)
    measured = pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64))
    assert abs(measured - target) < 0.1


def test_normalize_does_not_blow_up_near_silence():
    zeros = np.zeros((SR, 2), np.float32)
    np.testing.assert_array_equal(normalize_loudness(zeros, SR), zeros)
    whisper = noise(1.0, 1e-6, seed=1)
    out = normalize_loudness(whisper, SR, target_lufs=-20.0, max_gain_db=30.0)
    assert np.all(np.isfinite(out))
    assert np.abs(out).max() <= np.abs(whisper).max() * 10 ** (30 / 20) * 1.0001
    short = tone(1000.0, 0.1, amp=0.01)  # shorter than a 400-ms gating block
    assert np.all(np.isfinite(normalize_loudness(short, SR)))


def test_denoise_lowers_noise_floor_and_keeps_tone():
    # A 1-s note in the middle of 3 s of noise: the noise floor comes from the quiet part.
    clip = np.concatenate([0 * tone(1, 1.0), tone(1000.0, 1.0, amp=0.3), 0 * tone(1, 1.0)])
    clip += noise(3.0, 0.01, seed=2)
    out = denoise(clip, SR, prop_decrease=0.8)
    assert out.shape == clip.shape
    noise_before, noise_after = band_power(clip, 3000, 15000), band_power(out, 3000, 15000)
    tone_before, tone_after = band_power(clip, 900, 1100), band_power(out, 900, 1100)
    assert 10 * math.log10(noise_before / noise_after) > 6.0
    assert abs(10 * math.log10(tone_before / tone_after)) < 1.0
    # The end of the clip is not lost in the STFT (gated by at most 1 - prop_decrease).
    assert np.sqrt(np.mean(out[-300:] ** 2)) > 0.1 * np.sqrt(np.mean(clip[-300:] ** 2))


def reference_gate(
    clip: np.ndarray,
    *,
    chunk_size: int,
    stationary: bool = True,
    freq_smooth_hz: float | None = None,
    **extra: object,
) -> np.ndarray:
    """noisereduce's own ``reduce_noise`` with the chain's default gate settings."""
    return noisereduce.reduce_noise(
        y=clip.T,
        sr=SR,
        stationary=stationary,
        prop_decrease=0.5,
        n_fft=2048,
        hop_length=1024,
        y_noise=noise_reference(clip, 2048, 0.2) if stationary else None,
        n_std_thresh_stationary=1.5,
        freq_mask_smooth_hz=freq_smooth_hz,
        time_mask_smooth_ms=None,
        chunk_size=chunk_size,
        padding=2048,
        n_jobs=1,
        use_tqdm=False,
        **extra,
    ).T


@pytest.mark.parametrize("frames", [3 * SR + 333, 2 * 65536])
def test_chunked_denoise_matches_noisereduce_on_the_whole_clip(frames):
    # denoise() lets noisereduce work in padded 65536-frame chunks for speed; on whole-hop chunk
    # borders every sample comes from the same STFT frames, so only float rounding may differ.
    clip = music_like(frames / SR + 0.1, seed=5)[:frames] + noise(frames / SR + 0.1, 0.01, seed=6)[:frames]
    whole = reference_gate(clip, chunk_size=frames + 1)
    out = denoise(clip, SR)
    assert np.abs(out - clip).max() > 1e-3  # the gate did act
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("frames", "options", "chunk"),
    [
        (3 * 65536 + 777, {}, 65536),  # stationary: padded 65536-frame chunks
        (2 * SR, {"freq_smooth_hz": 200.0}, None),  # mask smoothing: the whole clip at once
        (2 * SR, {"stationary": False}, None),  # non-stationary: the whole clip at once
    ],
)
def test_denoise_is_noisereduce_sample_for_sample(frames, options, chunk):
    # denoise() calls noisereduce's gate chunk by chunk itself instead of through reduce_noise
    # (no temporary file): the same calls, so the very same samples.
    clip = music_like(frames / SR + 0.1, seed=8)[:frames] + noise(frames / SR + 0.1, 0.01, seed=9)[:frames]
    stationary = options.get("stationary", True)
    expected = reference_gate(
        clip,
        stationary=stationary,
        freq_smooth_hz=options.get("freq_smooth_hz"),
        chunk_size=chunk or frames + 1,
        clip_noise_stationary=False,
    )
    out = denoise(clip, SR, **options)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert np.abs(out - clip).max() > 1e-3  # the gate did act
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("seconds", [0.3, 7.0])
def test_loudness_of_float32_samples_is_the_float64_measurement(seconds):
    # The meter gets the float32 samples without a float64 copy: the same loudness to far below
    # anything audible (a gain of 1e-5 LU is 1e-6 in amplitude).
    clip = music_like(seconds, seed=3, amp=0.3)
    block = np.resize(clip, (round(0.4 * SR) + 1, 2)) if clip.shape[0] < 0.4 * SR + 1 else clip
    reference = pyloudnorm.Meter(SR).integrated_loudness(block.astype(np.float64))
    assert abs(integrated_loudness(clip, SR) - reference) < 1e-5


@settings(max_examples=10, deadline=None)
@given(gain_db=st.floats(-30.0, 30.0), seed=st.integers(0, 10_000))
def test_limiter_in_float32_is_the_float64_limiter_within_a_millionth(gain_db, seed):
    # float32 samples move the detector's interpolation and the gains by a few float32 ulps:
    # measured at most 4.7e-7 of a sample's value (-126 dB) over 175 levels and signals.
    x = music_like(1.0, seed=seed % 7, amp=0.2) * np.float32(10 ** (gain_db / 20.0))
    single = np.concatenate(
        [TruePeakLimiter(SR, 2, dtype=np.float32).process(x[i : i + 3000]) for i in range(0, SR, 3000)]
    )
    double = np.concatenate([TruePeakLimiter(SR, 2).process(x[i : i + 3000]) for i in range(0, SR, 3000)])
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, double.astype(np.float32), rtol=1e-6, atol=1e-9)
    assert np.abs(single).max() <= 10 ** (-1.0 / 20.0)


def test_prepare_clip_trims_and_normalizes():
    clip = np.concatenate([np.zeros((SR // 2, 2), np.float32), music_like(3.0, 5, amp=0.02)])
    out = prepare_clip(clip, SR, ChainConfig(target_lufs=-18.0))
    assert out.shape[0] < clip.shape[0] - SR // 4
    measured = pyloudnorm.Meter(SR).integrated_loudness(out.astype(np.float64))
    assert abs(measured - (-18.0)) < 1.0
    with pytest.raises(AudioError):
        prepare_clip(np.full((SR, 2), np.nan, np.float32), SR, ChainConfig())


def test_resample_changes_rate_and_keeps_pitch():
    clip = tone(1000.0, 1.0, sr=32000)
    out = resample(clip, 32000, SR)
    assert abs(out.shape[0] - SR) <= 1 and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    assert abs(np.fft.rfftfreq(out.shape[0], 1 / SR)[spectrum.argmax()] - 1000.0) < 2.0


# --- crossfade --------------------------------------------------------------------------------


@FAST
@given(frames=st.integers(1, 5000))
def test_equal_power_gains_sum_to_one(frames):
    fade_out, fade_in = equal_power_gains(frames)
    np.testing.assert_allclose(fade_out**2 + fade_in**2, 1.0, atol=1e-6)
    assert np.all(np.diff(fade_in[:, 0]) >= 0) and np.all(np.diff(fade_out[:, 0]) <= 0)


# --- block level ------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(gain_db=st.floats(0.0, 30.0), seed=st.integers(0, 10_000), channels=st.sampled_from([1, 2]))
def test_limiter_holds_sample_and_true_peak_ceiling(gain_db, seed, channels):
    x = noise(0.5, 10 ** (gain_db / 20.0), seed, channels)
    config = ChainConfig(highpass=False, ceiling_dbtp=-1.0)
    proc = BlockProcessor(SR, channels, config)
    y = run_blocks(proc, x, [4096] * 4)
    ceiling = 10 ** (-1.0 / 20.0)
    assert y.shape == x.shape
    assert np.abs(y).max() <= ceiling
    assert true_peak_dbtp(y) <= -1.0


def test_limiter_holds_true_peak_of_inter_sample_peaks():
    # A sine near fs/4 with a phase offset peaks between samples.
    t = np.arange(SR) / SR
    x = np.repeat((2.0 * np.sin(2 * np.pi * 11025.0 * t + np.pi / 4))[:, None], 2, axis=1)
    proc = BlockProcessor(SR, 2, ChainConfig(highpass=False))
    y = run_blocks(proc, x.astype(np.float32), [1000] * 10)
    assert true_peak_dbtp(y) <= -1.0
    assert true_peak_dbtp(y[SR // 2 :]) > -1.5  # limited to the ceiling, not far below


def test_limiter_leaves_quiet_audio_untouched():
    x = noise(0.5, 0.05, seed=7)
    proc = BlockProcessor(SR, 2, ChainConfig(highpass=False))
    np.testing.assert_array_equal(run_blocks(proc, x, [512] * 10), x)


def test_highpass_removes_10hz_and_keeps_1khz():
    proc = BlockProcessor(SR, 1, ChainConfig(limiter=False, highpass_hz=35.0, highpass_order=4))
    low = run_blocks(proc, tone(10.0, 4.0, channels=1), [4096] * 10)
    proc.reset()
    high = run_blocks(proc, tone(1000.0, 4.0, channels=1), [4096] * 10)
    settled = slice(SR, None)
    assert 20 * np.log10(np.abs(low[settled]).max() / 0.5) < -30.0
    assert abs(20 * np.log10(np.abs(high[settled]).max() / 0.5)) < 0.1


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=30),
    level_db=st.floats(-20.0, 20.0),
    channels=st.sampled_from([1, 2]),
)
def test_block_processor_output_does_not_depend_on_block_size(sizes, level_db, channels):
    x = noise(1.0, 10 ** (level_db / 20.0), seed=len(sizes), channels=channels)
    reference = run_blocks(BlockProcessor(SR, channels), x, [4096] * 10)
    np.testing.assert_array_equal(run_blocks(BlockProcessor(SR, channels), x, sizes), reference)


@FAST
@given(
    silence_before=st.integers(0, 3 * SR),
    sound=st.integers(1, SR),
    silence_after=st.integers(0, 3 * SR),
)
def test_sound_bounds_find_the_sound_within_one_window(silence_before, sound, silence_after):
    clip = np.zeros((silence_before + sound + silence_after, 2), np.float32)
    clip[silence_before : silence_before + sound] = 0.5  # well above -50 dBFS
    window = round(SR * 0.01)
    start, stop = sound_bounds(clip, SR, threshold_db=-50.0, window_ms=10.0)
    assert start <= silence_before < start + window
    assert stop - window < silence_before + sound <= stop


# --- to the output format, whole and streamed --------------------------------------------------


def test_to_output_resamples_prepares_and_matches_channels():
    config = ChainConfig()
    mono = music_like(3.0, seed=5)[:, :1]
    lead = np.zeros((SR // 2, 1), np.float32)
    clip = to_output(np.concatenate([lead, mono]), SR, 48000, 2, config)
    assert clip.audio.shape[1] == 2 and np.array_equal(clip.audio[:, 0], clip.audio[:, 1])
    assert abs(clip.audio.shape[0] - 3.0 * 48000) < 0.02 * 48000  # the half second of silence is gone
    assert abs(clip.lead_frames - 24000) <= round(0.01 * 48000)  # where the trimmed lead ended
    loudness = pyloudnorm.Meter(48000).integrated_loudness(clip.audio.astype(np.float64))
    assert abs(loudness - config.target_lufs) < 0.5
    # the same clip prepared at its own rate, then resampled, is close (one path chooses the order)
    other = resample(prepare_clip(np.concatenate([lead, mono]), SR, config), SR, 48000)
    assert abs(other.shape[0] - clip.audio.shape[0]) < 0.01 * 48000


def test_streamed_pieces_come_out_as_long_and_as_loud_as_the_whole_clip():
    from musicmed_stream.chain import ClipStreamer

    config = ChainConfig()
    clip = np.concatenate([np.zeros((SR // 4, 1), np.float32), music_like(6.0, seed=9, amp=0.05)[:, :1]])
    streamer = ClipStreamer(SR, 48000, 2, config)
    pieces = [streamer.push(clip[i : i + 32000]) for i in range(0, clip.shape[0], 32000)]
    pieces.append(streamer.close())
    streamed = np.concatenate(pieces)
    whole = to_output(clip, SR, 48000, 2, config).audio
    assert streamed.shape[1] == 2
    assert abs(streamed.shape[0] - whole.shape[0]) < 0.02 * 48000  # leading silence trimmed once
    meter = pyloudnorm.Meter(48000)
    settled = streamed[streamed.shape[0] // 2 :].astype(np.float64)
    assert abs(meter.integrated_loudness(settled) - config.target_lufs) < 1.5
    # the gain glides: no step between pieces larger than the music's own
    steps = np.abs(np.diff(streamed[:, 0]))
    assert steps.max() < 4 * np.percentile(steps, 99.9)


def test_a_synthesizing_engines_clips_are_not_gated_unless_asked():
    class Synthesizer:
        synthesized = True

    assert ChainConfig().for_engine(Synthesizer()).denoise is False
    assert ChainConfig(denoise_synthesized=True).for_engine(Synthesizer()).denoise is True
    assert ChainConfig().for_engine(object()).denoise is True  # a model's clips keep the gate
    clip = music_like(3.0, seed=2) + noise(3.0, 0.01, seed=3)
    gated = to_output(clip, SR, SR, 2, ChainConfig())
    clean = to_output(clip, SR, SR, 2, ChainConfig().for_engine(Synthesizer()))
    assert not np.array_equal(gated.audio, clean.audio)
