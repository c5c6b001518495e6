"""The MusicGen engine on a tiny random-weight checkpoint (CPU, seconds)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from tiny_musicgen import one_torch_thread

from musicmed_stream.engines.base import Continuation, Engine, stream_clip
from musicmed_stream.engines.musicgen import (
    MusicgenEngine,
    load_adapter_info,
    musicgen_unavailable_reason,
)
from musicmed_stream.engines.musicgen.loading import resolve_model_dir
from musicmed_stream.engines.registry import create_engine
from musicmed_stream.errors import ConfigError, GenerationCancelled, WeightsNotFoundError
from musicmed_stream.planner.types import Segment

SR = 32000
HOP = 640


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def tiny_dir(tiny_musicgen_dir):
    return tiny_musicgen_dir


@pytest.fixture(scope="module")
def engines(tiny_dir):
    """One engine per decoding implementation, shared by the tests of this module."""
    return {impl: MusicgenEngine(str(tiny_dir), decode_impl=impl) for impl in ("hf", "static")}


def seg(index: int = 0, seconds: float = 0.6, mood: str = "calm") -> Segment:
    return Segment(index, index * seconds, seconds, 0.4, -0.6, "calmness", mood, "piano", "ambient")


def test_engine_protocol_and_rate(engines):
    for engine in engines.values():
        assert isinstance(engine, Engine)
        assert (engine.name, engine.sample_rate, engine.channels) == ("musicgen", SR, 1)


def test_unavailable_reason(tiny_dir, tmp_path):
    assert musicgen_unavailable_reason(model=str(tiny_dir)) is None
    reason = musicgen_unavailable_reason(model=str(tmp_path / "nothing"))
    assert reason is not None and "hf download" in reason
    if not torch.cuda.is_available():
        assert "GPU" in musicgen_unavailable_reason(model=str(tiny_dir), device="cpu", require_gpu=True)


def test_missing_weights_name_files_and_fetch_command(tiny_dir, tmp_path):
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_model_dir(str(tmp_path))
    message = str(err.value)
    assert "model.safetensors" in message and "tokenizer.json" in message and "hf download" in message


def test_uncached_model_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="not in the Hugging Face cache"):
        resolve_model_dir("musicmed-test/not-a-model", allow_download=True)


def test_registry_auto_picks_musicgen_or_falls_back(tiny_dir, tmp_path):
    assert create_engine("auto", musicgen={"model": str(tiny_dir)}).name == "musicgen"
    assert create_engine("auto", musicgen={"model": str(tmp_path / "missing")}).name == "builtin"


@pytest.mark.parametrize(
    "options",
    [{"tail_seconds": -1}, {"temperature": 0}, {"guidance_scale": float("nan")}, {"decode_impl": "fast"}],
)
def test_bad_options_are_config_errors(tiny_dir, options):
    with pytest.raises(ConfigError):
        MusicgenEngine(str(tiny_dir), **options)


def test_clip_longer_than_window_is_refused(engines):
    engine = engines["static"]
    with pytest.raises(ConfigError, match="window"):
        engine.generate(seg(seconds=engine.max_clip_seconds + 1), None, seed=0)


@pytest.mark.parametrize("impl", ["hf", "static"])
def test_same_seed_same_audio_other_seed_other_audio(engines, impl):
    engine = engines[impl]
    a = engine.generate(seg(seconds=0.3), None, seed=3)
    b = engine.generate(seg(seconds=0.3), None, seed=3)
    c = engine.generate(seg(seconds=0.3), None, seed=4)
    assert a.audio.shape == (round(0.3 * SR), 1) and a.audio.dtype == np.float32
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)


def test_continuation_excludes_the_prompt_audio(engines, tiny_dir):
    """The clip equals transformers' own output for the same inputs, minus the prompt's samples."""
    from transformers import AutoProcessor, MusicgenForConditionalGeneration

    engine = engines["hf"]
    first = engine.generate(seg(0), None, seed=1)
    tail = np.ascontiguousarray(first.audio[-12345:])
    clip = engine.generate(seg(1, mood="relaxing"), Continuation(tail, SR), seed=2)
    kept = (12345 // HOP) * HOP  # the prompt is cut to whole codec frames, keeping the end
    assert clip.info["prompt_frames"] == 12345 // HOP
    assert clip.info["prompt_audio_seconds"] == pytest.approx(kept / SR)

    net = MusicgenForConditionalGeneration.from_pretrained(tiny_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_dir)
    inputs = processor(
        text=[seg(1, mood="relaxing").prompt], audio=[tail[-kept:, 0]], sampling_rate=SR, return_tensors="pt"
    )
    frames = int(np.ceil(0.6 * SR / HOP))
    with torch.random.fork_rng(), torch.inference_mode():
        torch.manual_seed(2)
        full = net.generate(
            **inputs, do_sample=True, top_k=250, guidance_scale=3.0, max_new_tokens=frames + 3
        )
    full = full[0, 0].numpy()
    assert full.size == kept + frames * HOP
    np.testing.assert_array_equal(clip.audio[:, 0], full[kept : kept + clip.audio.shape[0]])


def test_greedy_static_decoding_equals_transformers_generate(tiny_dir):
    """The static-cache decoder computes the same tokens as transformers (top_k=1 removes sampling)."""
    hf = MusicgenEngine(str(tiny_dir), top_k=1, decode_impl="hf")
    static = MusicgenEngine(str(tiny_dir), top_k=1, decode_impl="static")
    a, b = hf.generate(seg(0), None, seed=0), static.generate(seg(0), None, seed=0)
    np.testing.assert_array_equal(a.audio, b.audio)
    previous = Continuation(a.audio, SR)
    a2 = hf.generate(seg(1, mood="sad"), previous, seed=0)
    b2 = static.generate(seg(1, mood="sad"), previous, seed=0)
    assert a2.info["prompt_frames"] == b2.info["prompt_frames"] > 0
    np.testing.assert_array_equal(a2.audio, b2.audio)


def test_tail_is_resampled_and_mixed_to_mono(engines):
    engine = engines["static"]
    rate = 44100
    t = np.arange(int(0.5 * rate)) / rate
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1).astype(np.float32)
    clip = engine.generate(seg(1), Continuation(stereo, rate), seed=0)
    assert clip.info["prompt_frames"] == (round(0.5 * SR)) // HOP
    assert clip.audio.shape == (round(0.6 * SR), 1)


@pytest.mark.parametrize("impl", ["hf", "static"])
def test_stream_chunks_add_up_to_the_clip(tiny_dir, impl):
    engine = MusicgenEngine(str(tiny_dir), decode_impl=impl, stream_chunk_seconds=0.15)
    previous = Continuation(np.random.default_rng(0).uniform(-0.5, 0.5, (SR // 2, 1)).astype(np.float32), SR)
    items = list(stream_clip(engine, seg(1, seconds=0.8), previous, seed=5))
    chunks, clip = items[:-1], items[-1]
    assert len(chunks) >= 4
    streamed = np.concatenate(chunks)
    assert streamed.shape == clip.audio.shape
    # Windowed decoding converges to the whole-clip decode; it is not bit-exact at window edges.
    error = np.sqrt(np.mean((streamed - clip.audio) ** 2)) / np.sqrt(np.mean(clip.audio**2))
    assert error < 0.05
    np.testing.assert_array_equal(clip.audio, engine.generate(seg(1, seconds=0.8), previous, seed=5).audio)


@pytest.mark.parametrize("impl", ["hf", "static"])
def test_cancel_stops_a_streaming_clip(tiny_dir, impl):
    engine = MusicgenEngine(str(tiny_dir), decode_impl=impl, stream_chunk_seconds=0.2)
    cancel = threading.Event()
    received = 0
    with pytest.raises(GenerationCancelled):
        for item in engine.stream(seg(0, seconds=20.0), None, seed=0, cancel=cancel):
            assert isinstance(item, np.ndarray)
            received += item.shape[0]
            cancel.set()
    assert 0 < received < 20 * SR


def test_cancel_before_start(engines):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        engines["static"].generate(seg(), None, seed=0, cancel=cancel)


def test_adapter_metadata_is_validated(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"adapter_config\.json"):
        load_adapter_info(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "musicmed_adapter.json").write_text(json.dumps({"tag_mapping": {"tags": 3}}))
    with pytest.raises(ConfigError):
        load_adapter_info(tmp_path)


def test_closing_the_stream_stops_the_clip_and_frees_the_engine(engines):
    engine = engines["static"]
    stream = engine.stream(seg(0, seconds=20.0), None, seed=0)
    first = next(stream)
    assert isinstance(first, np.ndarray) and first.shape[1] == 1
    stream.close()  # sets the stream's own stop event and joins the worker
    assert engine.generate(seg(), None, seed=3).audio.shape == (round(0.6 * SR), 1)
