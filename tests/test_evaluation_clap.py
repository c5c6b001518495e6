"""CLAP score and zero-shot tags with a tiny random CLAP model loaded like a user's local model."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given
from hypothesis import strategies as st
from test_evaluation_support import SR, synth_music
from tiny_clap import make_tiny_clap

from musicmed_stream.errors import ConfigError, WeightsNotFoundError
from musicmed_stream.evaluation import backends
from musicmed_stream.evaluation.clap import ClapScorer, window_starts


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return make_tiny_clap(tmp_path_factory.mktemp("tiny_clap"))


@pytest.fixture(scope="module")
def scorer(clap_dir):
    return ClapScorer(clap_dir)


@given(st.integers(1, 5000), st.integers(1, 700))
def test_windows_are_full_and_cover_the_clip(n, window):
    starts = window_starts(n, window)
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        assert s >= 0 and s + window <= max(n, window)  # full windows, never past the clip
        covered[s : s + window] = True
    assert covered.all()
    assert starts == sorted(set(starts))
    assert len(starts) == -(-n // window)  # as few as cover it


def test_scorer_reads_the_model_window(scorer):
    assert scorer.sample_rate == 48000
    assert scorer.window == 10 * 48000
    clip = synth_music(25, 100, 0.5, bright=True, major=True)
    windows = scorer.windows(clip, SR)
    assert [w.size for w in windows] == [scorer.window] * 3


def test_clap_score_is_finite_bounded_and_per_window(scorer):
    clip = synth_music(25, 100, 0.5, bright=True, major=True)
    result = scorer.score(clip, SR, "calm, relaxed, piano, ambient")
    assert len(result.window_scores) == 3
    assert np.all(np.isfinite(result.window_scores))
    assert all(-100 <= s <= 100 for s in result.window_scores)
    assert result.score == pytest.approx(np.mean(result.window_scores))


def test_clap_score_equals_direct_computation(scorer, clap_dir):
    import torch
    from transformers import ClapModel, ClapProcessor

    clip = synth_music(14, 80, 0.4, bright=False, major=False, seed=3)
    prompt = "sad, melancholic, strings, classical"
    model = ClapModel.from_pretrained(clap_dir).eval()
    processor = ClapProcessor.from_pretrained(clap_dir)
    mono48 = soxr.resample(clip.mean(axis=1), SR, 48000)
    window = 480000
    pieces = [mono48[:window], mono48[-window:]]  # 14 s: the first 10 s and the last 10 s
    with torch.no_grad():
        audio_inputs = processor.feature_extractor(pieces, sampling_rate=48000, return_tensors="pt")
        audio = model.get_audio_features(**audio_inputs).pooler_output.numpy()
        text_inputs = processor.tokenizer([prompt], return_tensors="pt")
        text = model.get_text_features(**text_inputs).pooler_output.numpy()[0]
    cos = audio @ text / (np.linalg.norm(audio, axis=1) * np.linalg.norm(text))
    assert scorer.score(clip, SR, prompt).score == pytest.approx(100 * cos.mean(), abs=1e-3)


def test_zero_shot_tag_scores_are_probabilities(scorer):
    clips = [
        synth_music(4, bpm, 0.4, bright=b, major=b, seed=i)
        for i, (bpm, b) in enumerate([(70, False), (130, True)])
    ]
    tags = ["calm", "sad", "happy", "energetic"]
    windows = [scorer.clip_embedding_windows(c, SR) for c in clips]
    scores = backends.clap_tag_scores(windows, backends.clap_text_embeddings(scorer, tags))
    assert scores.shape == (2, 4)
    assert np.all(scores >= 0)
    assert scores.sum(axis=1) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("model", ["musicmed-test/no-such-clap-model", "/nonexistent/clap/folder"])
def test_missing_model_says_how_to_get_it(model):
    with pytest.raises(WeightsNotFoundError, match="huggingface-cli download laion/larger_clap_music"):
        ClapScorer(model)


def test_unusable_device_is_a_clear_error(clap_dir):
    with pytest.raises(ConfigError, match="torch device 'no-such-device'"):
        ClapScorer(clap_dir, device="no-such-device")
