"""Metric functions on cases whose answers are known independently (by hand or from first principles)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_evaluation_support import SR, synth_chords, synth_music

from musicmed_stream.emotion.point import VA
from musicmed_stream.evaluation import adherence, comfort, recognition
from musicmed_stream.evaluation.features import estimate_va, extract_features, key_correlations
from musicmed_stream.evaluation.speed import speed_metrics

# --- mood recognition -------------------------------------------------------------------------

TAGS = ["a", "b", "c", "d"]
TRUTH = ["a", "b", "a", "c"]  # tag d is intended by no clip
SCORES = np.array(
    [
        [0.9, 0.1, 0.0, 0.3],
        [0.2, 0.7, 0.1, 0.0],
        [0.25, 0.8, 0.1, 0.0],
        [0.3, 0.2, 0.5, 0.0],
    ]
)


def test_auprc_macro_matches_hand_computed_value():
    # a: ranking c0(+) c3 c2(+) c1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # b: ranking c2 c1(+) ...       -> AP = 1/2
    # c: c3(+) first                -> AP = 1;   d has no positive clip and is left out.
    truth = recognition.one_hot(TRUTH, TAGS)
    assert recognition.auprc_macro(truth, SCORES) == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)


def test_hamming_score_top1_top2_and_threshold():
    truth = recognition.one_hot(TRUTH, TAGS)
    # top-1 picks a, b, b, c: right, right, wrong, right.
    assert recognition.hamming_score(truth, recognition.predict(SCORES, top_k=1)) == pytest.approx(0.75)
    # top-2 adds one wrong tag to every clip (and clip 2 gets a back): 1/2 each.
    assert recognition.hamming_score(truth, recognition.predict(SCORES, top_k=2)) == pytest.approx(0.5)
    # threshold 0.5 predicts {a}, {b}, {b}, {c}.
    predicted = recognition.predict(SCORES, threshold=0.5)
    assert predicted.sum(axis=1).tolist() == [1, 1, 1, 1]
    assert recognition.hamming_score(truth, predicted) == pytest.approx(0.75)


def test_hamming_score_counts_partial_overlap():
    truth = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    predicted = np.array([[1, 0, 1, 0], [0, 0, 0, 0]])
    # clip 0: |{a}| / |{a, b, c}| = 1/3; clip 1: both empty = 1.
    assert recognition.hamming_score(truth, predicted) == pytest.approx((1 / 3 + 1) / 2)


binary_rows = arrays(np.int8, st.tuples(st.integers(1, 6), st.just(5)), elements=st.integers(0, 1))


@given(binary_rows, st.data())
def test_hamming_score_is_one_exactly_for_a_perfect_prediction(truth, data):
    predicted = data.draw(arrays(np.int8, truth.shape, elements=st.integers(0, 1)))
    score = recognition.hamming_score(truth, predicted)
    assert 0.0 <= score <= 1.0
    assert (score == 1.0) == bool(np.array_equal(truth, predicted))


@given(st.lists(st.integers(0, 4), min_size=2, max_size=8), st.data())
def test_auprc_is_one_when_every_intended_tag_ranks_first(labels, data):
    tags = ["t0", "t1", "t2", "t3", "t4"]
    truth = recognition.one_hot([tags[i] for i in labels], tags)
    noise = data.draw(arrays(np.float64, truth.shape, elements=st.floats(0, 0.5)))
    assert recognition.auprc_macro(truth, truth + noise) == pytest.approx(1.0)


def test_one_hot_rejects_unknown_labels():
    with pytest.raises(ValueError, match="zzz"):
        recognition.one_hot(["a", "zzz"], TAGS)


# --- listening comfort ------------------------------------------------------------------------


def sine(freq: float, amplitude: float, seconds: float, sr: int = 48000, phase: float = 0.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr + phase)


def db(x: float) -> float:
    return 20 * np.log10(x)


def test_integrated_loudness_of_a_1khz_sine_follows_bs1770():
    # BS.1770 is calibrated so that a full-scale 997 Hz sine on one channel reads -3.01 LUFS.
    for level in (-17.0, -27.0):
        amplitude = 10 ** (level / 20)
        measured = comfort.integrated_loudness(sine(997, amplitude, 5), 48000)
        assert measured == pytest.approx(-3.01 + level, abs=0.1)


def test_loudness_step_between_two_clips_at_known_lufs():
    quiet, loud = sine(997, 10 ** (-27 / 20), 4), sine(997, 10 ** (-17 / 20), 4)
    steps = comfort.loudness_steps([quiet, loud, loud], 48000)
    assert steps == pytest.approx([10.0, 0.0], abs=0.05)


def test_loudness_range_of_two_plateaus_is_their_difference():
    # 20 s at -30 LUFS then 20 s at -20 LUFS: the 10th percentile falls in the quiet half and the
    # 95th in the loud one, so the range is 10 LU.
    audio = np.concatenate([sine(997, 10 ** (-27 / 20), 20), sine(997, 10 ** (-17 / 20), 20)])
    short_term = comfort.short_term_loudness(audio, 48000)
    assert short_term[:, 1].min() == pytest.approx(-30.0, abs=0.1)
    assert comfort.loudness_range(short_term[:, 1]) == pytest.approx(10.0, abs=0.15)


def test_loudness_range_agrees_with_pyloudnorm_reference():
    music = np.concatenate(
        [synth_music(8, 90, a, bright=False, major=True, seed=i) for i, a in enumerate((0.1, 0.4, 0.2))]
    )
    ours = comfort.loudness_range(comfort.short_term_loudness(music, SR)[:, 1])
    reference = pyloudnorm.Meter(SR).loudness_range(music)
    assert ours == pytest.approx(reference, abs=0.7)


@settings(max_examples=50)
@given(
    arrays(np.float64, st.integers(5, 60), elements=st.floats(-45, -10)),
    st.floats(-10, 10),
)
def test_loudness_range_ignores_a_constant_gain(short_term, gain):
    # Both gates and both percentiles move with the gain, so the range does not.
    assert comfort.loudness_range(short_term + gain) == pytest.approx(
        comfort.loudness_range(short_term), abs=1e-9
    )
    assert comfort.loudness_range(np.full(7, -23.0)) == 0.0


def test_true_peak_finds_the_intersample_peak():
    # A sine at a quarter of the sample rate, 45 degrees off: every sample sits at 0.707 of the
    # amplitude, the waveform between them reaches the full amplitude.
    audio = sine(12000, 0.5, 1.0, phase=np.pi / 4)
    # Gentle fades, so that no band-limited overshoot at an abrupt edge adds to the peak.
    fade = np.sin(np.linspace(0, np.pi / 2, 4800)) ** 2
    audio[:4800] *= fade
    audio[-4800:] *= fade[::-1]
    assert db(np.max(np.abs(audio))) == pytest.approx(db(0.5) - 3.01, abs=0.05)
    assert comfort.true_peak_dbtp(audio) == pytest.approx(db(0.5), abs=0.1)


def test_clipped_samples_and_silent_gaps():
    sr = 8000
    tone = sine(440, 0.5, 2.0, sr)
    audio = np.concatenate([tone, np.zeros(int(1.5 * sr)), tone, np.zeros(int(0.5 * sr)), tone])
    gaps = comfort.silent_gaps(audio, sr)
    assert len(gaps) == 1
    assert gaps[0] == pytest.approx((2.0, 3.5), abs=0.06)
    clipped = np.clip(tone * 3, -1, 1)
    assert comfort.clipped_samples(tone) == 0
    assert comfort.clipped_samples(clipped) == np.count_nonzero(np.abs(tone * 3) >= 1)


def test_clean_sine_and_clean_music_have_no_clicks():
    assert comfort.detect_clicks(sine(440, 0.3, 3, 44100), 44100).size == 0
    for bright, bpm in ((False, 70), (True, 130)):
        music = synth_music(6, bpm, 0.7, bright=bright, major=True)
        assert comfort.detect_clicks(music, SR).size == 0


def test_planted_click_is_found():
    sr = 44100
    spiked = sine(440, 0.3, 3, sr)
    spiked[sr] += 0.05
    assert comfort.detect_clicks(spiked, sr) == pytest.approx([1.0], abs=1e-3)
    # A bad splice in music: 37 samples dropped where that makes a jump in the waveform.
    music = synth_music(6, 90, 0.6, bright=False, major=False)[:, 0]
    around = np.arange(int(3.0 * SR), int(3.05 * SR))
    at = around[np.argmax(np.abs(music[around] - music[around + 37]))]
    assert abs(music[at] - music[at + 37]) > 0.05
    spliced = np.concatenate([music[:at], music[at + 37 :]])
    assert comfort.detect_clicks(spliced, SR) == pytest.approx([at / SR], abs=2e-3)


def test_comfort_report_counts_clicks_at_crossfades():
    sr = 44100
    audio = sine(440, 0.3, 6, sr)
    audio[int(2.9 * sr)] += 0.1  # inside the join of clip 0 (0-3.2 s) and clip 1 (2.8-6 s)
    audio[int(5.0 * sr)] += 0.1  # inside clip 1 only
    report, short_term = comfort.comfort_report(audio, sr, [(0.0, 3.2), (2.8, 6.0)])
    assert len(report.clicks_s) == 2
    assert report.clicks_at_boundaries == 1
    assert short_term.shape[1] == 2


# --- path adherence ---------------------------------------------------------------------------


def test_path_adherence_hand_case():
    planned = [VA(-0.5, -0.5), VA(0.0, 0.0), VA(0.5, 0.5)]
    measured = [VA(-0.4, -0.6), VA(0.1, 0.0), VA(0.6, 0.4)]
    result = adherence.path_adherence(planned, measured)
    assert result.mean_distance == pytest.approx((2 * np.sqrt(0.02) + 0.1) / 3)
    assert result.spearman_valence == pytest.approx(1.0)
    assert result.spearman_arousal == pytest.approx(1.0)
    assert result.start_quadrant_correct and result.end_quadrant_correct
    mirrored = [VA(-v.valence, v.arousal) for v in measured]
    result = adherence.path_adherence(planned, mirrored)
    assert result.spearman_valence == pytest.approx(-1.0)
    assert not result.start_quadrant_correct
    assert result.to_dict()["end_quadrant_measured"] == "-V+A"


def test_spearman_is_nan_for_a_constant_axis():
    planned = [VA(0.1 * i, 0.3) for i in range(4)]
    result = adherence.path_adherence(planned, planned)
    assert result.spearman_valence == pytest.approx(1.0)
    assert np.isnan(result.spearman_arousal)


# --- acoustic valence/arousal estimate --------------------------------------------------------


def test_key_correlations_recognize_a_major_and_a_minor_triad():
    major = np.zeros(12)
    major[[7, 11, 2]] = 1.0  # G B D
    minor = np.zeros(12)
    minor[[9, 0, 4]] = 1.0  # A C E
    assert key_correlations(major)[2] == "G major"
    assert key_correlations(minor)[2] == "A minor"


def test_bass_on_the_tonic_tells_a_minor_key_from_its_relative_major():
    # Without bass evidence, a chroma with equal weight on A C E reads as A minor (the triad test
    # above); the same pitch classes with C in the bass read as C major once the bass counts.
    chroma = np.zeros(12)
    chroma[[9, 0, 4]] = 1.0  # A C E
    bass_on_c = np.zeros(12)
    bass_on_c[0] = 1.0
    assert key_correlations(chroma)[2] == "A minor"
    assert key_correlations(chroma, bass_on_c)[2] == "C major"
    assert key_correlations(chroma, np.roll(bass_on_c, 9))[2] == "A minor"


# i-iv-v-i in A minor and I-IV-V-I in its relative C major: the same seven pitch classes
# (A B C D E F G), told apart only by which chords sound and which note is in the bass.
A_MINOR_CADENCE = [[45, 57, 60, 64], [38, 57, 62, 65], [40, 55, 59, 64], [45, 57, 60, 64]]
C_MAJOR_CADENCE = [[36, 55, 60, 64], [41, 57, 60, 65], [43, 55, 59, 62], [36, 55, 60, 64]]


@pytest.mark.parametrize(("chords", "key"), [(A_MINOR_CADENCE, "A minor"), (C_MAJOR_CADENCE, "C major")])
def test_a_cadence_is_read_in_its_key_and_mode(chords, key):
    features = extract_features(synth_chords(chords * 2, 1.0), SR)
    assert features.key == key
    assert (features.mode > 0) == key.endswith("major")


@pytest.mark.parametrize("bpm", [55, 90, 150])
def test_tempo_estimate_neither_doubles_slow_nor_halves_fast_music(bpm):
    music = synth_music(10, bpm, 0.4, bright=True, major=True)
    assert extract_features(music, SR).tempo_bpm == pytest.approx(bpm, rel=0.08)


def test_feature_estimate_ranks_fast_bright_major_above_slow_dark_minor():
    lively = synth_music(8, bpm=140, amplitude=0.5, bright=True, major=True)
    gloomy = synth_music(8, bpm=60, amplitude=0.05, bright=False, major=False)
    f_lively, f_gloomy = extract_features(lively, SR), extract_features(gloomy, SR)
    assert f_lively.tempo_bpm > f_gloomy.tempo_bpm
    assert f_lively.centroid_hz > f_gloomy.centroid_hz
    assert f_lively.mode > 0 > f_gloomy.mode
    va_lively, va_gloomy = estimate_va(f_lively), estimate_va(f_gloomy)
    assert va_lively.arousal > va_gloomy.arousal
    assert va_lively.valence > va_gloomy.valence
    assert -1 <= va_gloomy.valence <= va_lively.valence <= 1


# --- speed ------------------------------------------------------------------------------------


def test_speed_from_a_render_log():
    log = {
        "duration_s": 900.0,
        "timings_s": {"generate": 6.0, "chain": 3.0, "write": 1.0, "total": 10.0},
        "realtime_factor": 90.0,
        "generation_s": [2.0, 2.0, 2.0],
        "clips_resumed": 0,
    }
    speed = speed_metrics(log, 899.0)
    assert speed["basis"] == "total"
    assert speed["real_time_factor"] == 90.0
    assert speed["minutes_per_15min_session"] == pytest.approx(15 / 90)
    assert speed["engine_real_time_factor"] == pytest.approx(900 / 6)
    # A resumed render's wall time covers only part of the session: the engine's own seconds count.
    resumed = speed_metrics(log | {"clips_resumed": 2}, 899.0)
    assert resumed["basis"] == "engine"
    assert resumed["minutes_per_15min_session"] == pytest.approx(15 / 150)
    assert speed_metrics({}, 60.0)["minutes_per_15min_session"] is None
