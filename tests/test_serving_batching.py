"""Batched MusicGen decoding, best-of-N, the service's wire format and settings, the remote client
without a service (tiny random MusicGen on the CPU; no Ray)."""

from __future__ import annotations

import argparse
import base64
import json
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_musicgen import one_torch_thread

from musicmed_stream.engines.base import Clip, Continuation, stream_clip
from musicmed_stream.engines.musicgen.batched import ClipScheduler
from musicmed_stream.engines.musicgen.engine import MusicgenEngine, candidate_seed
from musicmed_stream.errors import ConfigError, GenerationCancelled
from musicmed_stream.planner.types import Segment
from musicmed_stream.serving import protocol
from musicmed_stream.serving.settings import ServeSettings, load_generate_server_config

SR = 32000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def engine(tiny_musicgen_dir):
    return MusicgenEngine(str(tiny_musicgen_dir), decode_impl="static", stream_chunk_seconds=0.1)


def seg(index: int = 0, seconds: float = 0.6, mood: str = "calm", valence=0.4, arousal=-0.6) -> Segment:
    return Segment(index, 0.0, seconds, valence, arousal, "calmness", mood, "piano", "ambient")


def tail(seconds: float = 0.5, seed: int = 0) -> Continuation:
    rng = np.random.default_rng(seed)
    return Continuation(rng.uniform(-0.5, 0.5, (int(seconds * SR), 1)).astype(np.float32), SR)


def test_greedy_batched_decoding_equals_the_static_decoder(tiny_musicgen_dir):
    """With top_k=1 sampling is gone: the batch computes the tokens of the tested static decoder."""
    greedy = MusicgenEngine(str(tiny_musicgen_dir), top_k=1, decode_impl="static")
    scheduler = ClipScheduler(greedy, slots=3)
    jobs = [scheduler.submit(seg(0), None, 0), scheduler.submit(seg(1, mood="sad"), tail(), 0)]
    scheduler.drain()
    np.testing.assert_array_equal(jobs[0].result().audio, greedy.generate(seg(0), None, seed=0).audio)
    np.testing.assert_array_equal(
        jobs[1].result().audio, greedy.generate(seg(1, mood="sad"), tail(), seed=0).audio
    )


def test_same_seed_same_clip_whatever_it_is_batched_with(engine):
    alone = ClipScheduler(engine, slots=4)
    job = alone.submit(seg(1), tail(), 7)
    alone.drain()
    reference = job.result().audio

    busy = ClipScheduler(engine, slots=4)
    others = [busy.submit(seg(0, 0.9, "sad"), None, 1), busy.submit(seg(2, 0.3), tail(0.3, 1), 3)]
    same = busy.submit(seg(1), tail(), 7)  # third slot, beside clips of other lengths and prompts
    late = busy.submit(seg(0), None, 9)
    busy.drain()
    np.testing.assert_array_equal(same.result().audio, reference)
    assert not np.array_equal(late.result().audio[:1000], same.result().audio[:1000])
    assert all(o.result().audio.shape[0] > 0 for o in others)


def test_streamed_chunks_add_up_and_do_not_depend_on_the_batch(engine):
    def chunks(scheduler: ClipScheduler) -> list:
        job = scheduler.submit(seg(1, 0.8), tail(), 5, stream=True)
        scheduler.drain()
        return list(job.items())

    alone = chunks(ClipScheduler(engine, slots=4))
    busy = ClipScheduler(engine, slots=4, columns_every=3)
    busy.submit(seg(0, 0.5), None, 11)
    beside = chunks(busy)
    clip = alone[-1]
    assert isinstance(clip, Clip) and len(alone) >= 5
    streamed = np.concatenate(alone[:-1])
    assert streamed.shape == clip.audio.shape
    assert np.sqrt(np.mean((streamed - clip.audio) ** 2)) / np.sqrt(np.mean(clip.audio**2)) < 0.05
    assert len(beside) == len(alone)
    for a, b in zip(alone, beside[:-1], strict=False):
        np.testing.assert_array_equal(a, b)


def test_continuous_admits_beside_a_running_clip_wave_waits(engine):
    for policy, admitted_early in (("continuous", True), ("wave", False)):
        scheduler = ClipScheduler(engine, slots=2, policy=policy, columns_every=2)
        first = scheduler.submit(seg(0, 2.0), None, 1)
        scheduler.tick()
        second = scheduler.submit(seg(1, 0.3), None, 2)
        scheduler.tick()
        assert (scheduler.active == 2) is admitted_early, policy
        scheduler.drain()
        assert first.result().audio.shape[0] == 2 * SR and second.result().audio.shape[0] == round(0.3 * SR)


def test_cancelled_clip_frees_its_slot_and_the_others_go_on(engine):
    scheduler = ClipScheduler(engine, slots=2, columns_every=2)
    cancel = threading.Event()
    doomed = scheduler.submit(seg(0, 5.0), None, 1, cancel=cancel)
    other = scheduler.submit(seg(1), None, 2)
    scheduler.tick()
    cancel.set()
    scheduler.tick()
    assert scheduler.slots[0] is None
    scheduler.drain()
    with pytest.raises(GenerationCancelled):
        doomed.result()
    assert other.result().audio.shape == (round(0.6 * SR), 1)


def test_scheduler_thread_serves_clips_submitted_from_threads(engine):
    scheduler = ClipScheduler(engine, slots=3)
    scheduler.start()
    try:
        jobs = []
        threads = [
            threading.Thread(target=lambda i=i: jobs.append(scheduler.submit(seg(i, 0.4), None, i)))
            for i in range(5)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(j.result().audio.shape[0] for j in jobs) == [round(0.4 * SR)] * 5
    finally:
        scheduler.stop()


def test_a_clip_too_long_for_the_batch_is_refused_before_it_starts(engine):
    scheduler = ClipScheduler(engine, slots=2, max_columns=40)
    with pytest.raises(ConfigError, match="token columns"):
        scheduler.submit(seg(0, 1.0), None, 0)


def test_best_of_keeps_the_candidate_the_scorer_ranks_first(tiny_musicgen_dir):
    from musicmed_stream.evaluation.selection import EmotionFitScorer

    engine = MusicgenEngine(str(tiny_musicgen_dir), decode_impl="static", best_of=3, scorer="features")
    segment = seg(0, 1.0, mood="energetic", valence=0.5, arousal=0.7)
    clip = engine.generate(segment, None, seed=4)
    candidates = engine.generate_candidates(segment, None, seed=4, n=3)
    scores = [
        s["score"] for s in EmotionFitScorer("features").score([c.audio for c in candidates], SR, segment)
    ]
    best = int(np.argmax(scores))
    assert len(set(scores)) == 3  # the candidates differ, so the choice means something
    np.testing.assert_array_equal(clip.audio, candidates[best].audio)
    summary = clip.info["best_of"]
    assert summary["chosen"] == best and summary["backend"] == "features"
    assert [c["score"] for c in summary["candidates"]] == pytest.approx(scores)
    assert [c["seed"] for c in summary["candidates"]] == [candidate_seed(4, i) for i in range(3)]
    items = list(stream_clip(engine, segment, None, seed=4))  # best-of streams the chosen clip whole
    assert len(items) == 2 and np.array_equal(items[0], clip.audio)


def test_best_of_options_are_checked(tiny_musicgen_dir):
    with pytest.raises(ConfigError):
        MusicgenEngine(str(tiny_musicgen_dir), best_of=0)
    with pytest.raises(ConfigError):
        MusicgenEngine(str(tiny_musicgen_dir), scorer="vibes")


# -- wire format, settings, client ---------------------------------------------------------------


def test_frames_survive_any_network_chunking():
    clip = Clip(np.linspace(-1, 1, 300, dtype=np.float32)[:, None], SR, 3, {"k": 1}, info={"seed": 5})
    stream = b"".join(
        [
            protocol.json_frame(protocol.HEADER, {"sample_rate": SR}),
            protocol.audio_frame(np.ones((7, 1), np.float32)),
            protocol.frame(protocol.HEARTBEAT),
            protocol.clip_frame(clip),
        ]
    )
    rng = np.random.default_rng(0)
    reader, frames, i = protocol.FrameReader(), [], 0
    while i < len(stream):
        n = int(rng.integers(1, 40))
        frames += reader.feed(stream[i : i + n])
        i += n
    assert [k for k, _ in frames] == [b"H", b"A", b"K", b"C"] and reader.pending == 0
    back = protocol.decode_clip(frames[3][1])
    np.testing.assert_array_equal(back.audio, clip.audio)
    assert (back.segment_index, back.state, back.info) == (3, {"k": 1}, {"seed": 5})


def test_request_round_trip_cuts_the_tail_and_checks_it():
    previous = tail(5.0)
    body = json.loads(protocol.encode_request(seg(2), previous, 9, tail_seconds=1.0))
    request = protocol.ClipRequest.model_validate(body)
    assert request.segment.to_segment() == seg(2) and request.seed == 9
    sent = request.previous.to_continuation(60.0)
    np.testing.assert_array_equal(sent.tail, previous.tail[-2 * SR :])  # 1 s + 1 s of resampler margin
    bad = dict(
        body, previous=dict(body["previous"], data=base64.b64encode(np.float32([np.nan]).tobytes()).decode())
    )
    with pytest.raises(ValueError, match="NaN"):
        protocol.ClipRequest.model_validate(bad).previous.to_continuation(60.0)
    with pytest.raises(ValueError, match="seed"):
        protocol.ClipRequest.model_validate(dict(body, seed=1.5))
    with pytest.raises(ValueError, match="extra"):
        protocol.ClipRequest.model_validate(dict(body, surprise=1))


def test_settings_from_toml(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text(
        '[serve]\nhost = "0.0.0.0"\ntoken = "t"\nmax_batch_size = 16\nbatching = "serve_batch"\n'
        "[serve.autoscaling]\nmin_replicas = 1\nmax_replicas = 4\n"
        '[engine.musicgen]\nmodel = "facebook/musicgen-small"\ntop_k = 200\nscorer = "features"\n'
        "[chain]\nnormalize = true\n"
    )
    config = load_generate_server_config(path)
    assert config.serve.max_batch_size == 16
    assert config.serve.autoscaling == {"min_replicas": 1, "max_replicas": 4}
    options = config.musicgen.engine_options()
    assert (options["model"], options["top_k"], options["scorer"]) == (
        "facebook/musicgen-small",
        200,
        "features",
    )
    assert options["adapter"] is None
    for text, key in (
        ("[serve]\nmax_batch_sise = 4\n", "serve.max_batch_sise"),
        ("[engine.musicgen]\ntop_k = -1\n", "engine.musicgen.top_k"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_generate_server_config(path)
    with pytest.raises(ValueError, match="token"):
        ServeSettings(host="0.0.0.0")
    assert ServeSettings().host == "127.0.0.1"


def test_cli_registers_generate_server():
    from musicmed_stream.cli import generate_server

    parser = argparse.ArgumentParser()
    generate_server.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate-server", "--config", "x.toml"])
    assert args.func is generate_server.run and args.config == "x.toml"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_service_is_a_clear_error_within_the_budget():
    pytest.importorskip("httpx")
    from musicmed_stream.engines.remote import RemoteEngine, ServiceUnavailableError

    engine = RemoteEngine(f"http://127.0.0.1:{_closed_port()}", "t", retry_budget_s=0.6, backoff_s=0.1)
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=r"unavailable for 0\.6 s"):
        engine.generate(seg(), None, seed=0)
    assert time.monotonic() - start < 3
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    slow = RemoteEngine(f"http://127.0.0.1:{_closed_port()}", retry_budget_s=30, backoff_s=5, max_backoff_s=5)
    with pytest.raises(GenerationCancelled):
        slow.generate(seg(), None, seed=0, cancel=cancel)
    with pytest.raises(ConfigError):
        RemoteEngine("gpu-box:8000")
