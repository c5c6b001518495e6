"""The generation service on Ray Serve, in-process on this machine, with the tiny random MusicGen.

One Ray instance and one service for the module (starting them takes ~25 s on 2 cores); the
clients are real :class:`RemoteEngine` instances over HTTP on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("httpx")
pytest.importorskip("ray")
pytest.importorskip("ray.serve")

import httpx
import ray

from musicmed_stream.engines.base import Clip, Continuation, stream_clip
from musicmed_stream.engines.remote import (
    RemoteAuthError,
    RemoteEngine,
    RemoteRequestError,
    ServiceUnavailableError,
)
from musicmed_stream.planner.types import Segment
from musicmed_stream.serving import protocol
from musicmed_stream.serving.settings import ServeSettings

SR = 32000
TOKEN = "s3cret-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SETTINGS = {
    "token": TOKEN,
    "max_batch_size": 4,
    "columns_every": 5,
    "heartbeat_s": 0.5,
    "torch_threads": 1,
    "cpus_per_replica": 0.5,
}


@pytest.fixture(scope="module")
def engine_options(tiny_musicgen_dir):
    return {"model": str(tiny_musicgen_dir), "stream_chunk_seconds": 0.1, "scorer": "features"}


@pytest.fixture(scope="module")
def service(engine_options):
    """The service on a free loopback port: 4 slots, continuous batching; stopped with Ray after."""
    from musicmed_stream.serving.app import start_service, stop_service

    settings = ServeSettings(port=free_port(), **SETTINGS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    try:
        start_service(settings, engine_options)
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        stop_service()


@pytest.fixture(scope="module")
def wave_service(service, engine_options):
    """A second application on the same proxy, under ``/wave``: Ray's ``@serve.batch`` waves."""
    from ray import serve

    from musicmed_stream.serving.app import start_service

    port = int(service.rsplit(":", 1)[1])
    settings = ServeSettings(
        port=port,
        app_name="wave",
        route_prefix="/wave",
        batching="serve_batch",
        batch_wait_timeout_s=0.3,
        **SETTINGS,
    )
    start_service(settings, engine_options)
    yield service + "/wave"
    serve.delete("wave")


def client(url: str, **options) -> RemoteEngine:
    return RemoteEngine(url, TOKEN, **({"timeout_s": 10.0, "retry_budget_s": 5.0} | options))


def seg(index: int = 0, seconds: float = 0.6, mood: str = "calm") -> Segment:
    return Segment(index, 0.0, seconds, 0.4, -0.6, "calmness", mood, "piano", "ambient")


def session(engine: RemoteEngine, seed: int, out: dict, key: str) -> None:
    """Two streamed clips, the second continuing the first's tail (as a daemon plays them)."""
    previous, clips, chunks = None, [], 0
    for i, mood in enumerate(("sad", "calm")):
        for item in stream_clip(engine, seg(i, 0.5, mood), previous, seed=seed + i):
            chunks += isinstance(item, np.ndarray)
        clips.append(item)
        previous = Continuation(item.audio[-SR // 4 :], item.sample_rate)
    out[key] = (clips, chunks)


def test_two_daemons_share_one_service(service):
    results: dict = {}
    threads = [
        threading.Thread(target=session, args=(client(service), seed, results, name))
        for seed, name in ((10, "ward-a"), (20, "ward-b"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == {"ward-a", "ward-b"}
    for clips, chunks in results.values():
        assert [c.audio.shape for c in clips] == [(SR // 2, 1)] * 2
        assert clips[1].info["prompt_frames"] > 0  # the second clip continued the first
        assert chunks > 2 * 2  # streamed in several chunks per clip
    a, b = results["ward-a"][0][0], results["ward-b"][0][0]
    assert not np.array_equal(a.audio, b.audio)  # each got its own session's clip
    assert a.info["batch_slots"] == 4 and a.info["decode_impl"] == "batched"


def test_same_seed_same_clip_alone_or_batched(service):
    engine = client(service)
    alone = engine.generate(seg(1, 0.8), None, seed=42)
    results: dict = {}

    def run(name: str, segment: Segment, seed: int) -> None:
        results[name] = client(service).generate(segment, None, seed=seed)

    threads = [threading.Thread(target=run, args=(f"other{i}", seg(i, 1.2, "sad"), i)) for i in range(3)]
    threads.append(threading.Thread(target=run, args=("same", seg(1, 0.8), 42)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    np.testing.assert_array_equal(results["same"].audio, alone.audio)
    streamed = list(engine.stream(seg(1, 0.8), None, seed=42))
    np.testing.assert_array_equal(streamed[-1].audio, alone.audio)


def test_serve_batch_waves_give_the_same_clips(service, wave_service):
    """Requests arriving together go out as one ``@serve.batch`` wave; the batch has the same
    slots as the continuous service, so the same seed gives the same clip there too."""
    results: dict = {}

    def run(seed: int) -> None:
        results[seed] = client(wave_service).generate(seg(seed, 0.5), None, seed=seed)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [1, 2, 3]
    assert all(c.info["policy"] == "wave" for c in results.values())
    np.testing.assert_array_equal(results[2].audio, client(service).generate(seg(2, 0.5), None, seed=2).audio)
    assert client(wave_service).info()["batching"] == "serve_batch"


def test_wrong_or_missing_token_is_refused(service):
    for token in ("wrong-token", ""):
        with pytest.raises(RemoteAuthError, match="refused the token"):
            RemoteEngine(service, token).generate(seg(), None, seed=0)
    assert httpx.get(service + protocol.INFO_PATH).status_code == 401
    assert httpx.get(service + protocol.HEALTH_PATH).json() == {"status": "ok"}
    assert httpx.get(service + "/openapi.json").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"seed": 1}', "segment"),
        (b'{"segment": {"index": 0}, "seed": 1}', "segment.start_s"),
        (
            b'{"segment": {"index": 0, "start_s": 0, "duration_s": 0.5, "valence": 7, "arousal": 0, '
            b'"emotion": "calmness", "mood": "calm", "instrument": "piano", "genre": "ambient"}, "seed": 1}',
            "segment.valence",
        ),
        (
            b'{"segment": {"index": 0, "start_s": 0, "duration_s": 300, "valence": 0, "arousal": 0, '
            b'"emotion": "calmness", "mood": "calm", "instrument": "piano", "genre": "ambient"}, "seed": 1}',
            "window",
        ),
        (
            b'{"segment": {"index": 0, "start_s": 0, "duration_s": 0.5, "valence": 0, "arousal": 0, '
            b'"emotion": "calmness", "mood": "calm", "instrument": "piano", "genre": "ambient"}, "seed": 1, '
            b'"previous": {"sample_rate": 32000, "channels": 1, "data": "!!"}}',
            "base64",
        ),
    ],
)
def test_malformed_request_gets_a_clear_error_and_the_service_keeps_serving(service, body, message):
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    response = httpx.post(service + protocol.CLIPS_PATH, content=body, headers=headers, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and message in response.json()["message"]
    assert client(service).generate(seg(), None, seed=1).audio.shape == (round(0.6 * SR), 1)


def test_client_raises_request_errors_without_retrying(service):
    start = time.monotonic()
    with pytest.raises(RemoteRequestError, match="window"):
        client(service, retry_budget_s=30).generate(seg(seconds=300), None, seed=0)
    assert time.monotonic() - start < 10


def test_best_of_through_the_service_keeps_the_best_scored_candidate(service):
    from musicmed_stream.evaluation.selection import EmotionFitScorer

    segment = Segment(0, 0.0, 1.0, 0.5, 0.7, "excitement", "energetic", "drums", "rock")
    clip = client(service, best_of=3, timeout_s=60).generate(segment, None, seed=4)
    summary = clip.info["best_of"]
    scores = [c["score"] for c in summary["candidates"]]
    assert summary["n"] == 3 and summary["chosen"] == int(np.argmax(scores))
    # The kept clip is the one the (real) scorer gives the top score, computed here again.
    [here] = EmotionFitScorer("features").score([clip.audio], SR, segment)
    assert here["score"] == pytest.approx(max(scores))


def test_service_killed_mid_clip_then_back(service):
    """The replica dies mid-stream: the client raises its clear error after its retry budget; Ray
    Serve starts a new replica, and the same client generates again without being rebuilt."""
    engine = client(service, timeout_s=2.0, retry_budget_s=2.0, backoff_s=0.2, max_backoff_s=0.5)
    before = engine.generate(seg(0), None, seed=3)
    pid = engine.info()["pid"]
    received = 0
    with pytest.raises(ServiceUnavailableError, match="unavailable"):
        for item in engine.stream(seg(1, 20.0), None, seed=5):
            if isinstance(item, np.ndarray):
                received += item.shape[0]
                if received and pid:
                    os.kill(pid, signal.SIGKILL)
                    pid = 0
    assert 0 < received < 20 * SR
    deadline = time.monotonic() + 120
    while True:  # wait for Serve to replace the replica
        try:
            if engine.info()["pid"]:
                break
        except (ServiceUnavailableError, RemoteRequestError):
            pass
        assert time.monotonic() < deadline, "the service did not come back"
        time.sleep(1.0)
    after = engine.generate(seg(0), None, seed=3)
    assert isinstance(after, Clip)
    np.testing.assert_array_equal(after.audio, before.audio)


def test_two_daemons_on_one_service_cover_for_it_while_it_is_down_and_use_it_again(service):
    """Two daemons play their own sessions from the service; its replica is killed mid-session:
    both go on (the built-in engine makes what the service cannot, no gap), and take clips from
    the service again once Serve has replaced the replica."""
    import asyncio

    from musicmed_stream.control.api import StartOptions
    from musicmed_stream.player.sinks import ManualSink
    from musicmed_stream.service.config import load_config
    from musicmed_stream.service.daemon import Daemon

    overrides = {
        "session.clip_seconds": 1.0,
        "session.minutes": 0.5,
        "session.jamendo": "",
        "playback.buffer_seconds": 2.0,
        "playback.volume": 1.0,
        "engine.retries": 1,
        "engine.retry_backoff_seconds": 0.1,
        "service.warmup": False,
    }
    config = load_config(env={}, overrides=overrides)

    def daemon() -> Daemon:
        engine = client(service, timeout_s=2.0, retry_budget_s=1.0, backoff_s=0.1, max_backoff_s=0.3)
        return Daemon(config, engine, ManualSink(SR, 1, 512), None)

    async def main() -> list[list]:
        daemons = [daemon(), daemon()]
        queues = []
        for d in daemons:
            await d.start()
            queues.append(d.subscribe())
        try:
            for seed, d in enumerate(daemons):
                await d.start_session(StartOptions("sad", "calm", seed=seed))
            await asyncio.gather(*(d.play(3.0) for d in daemons))
            pid = daemons[0].engine.info()["pid"]
            os.kill(pid, signal.SIGKILL)  # the service's replica dies mid-session
            await asyncio.gather(*(d.play(6.0) for d in daemons))
            deadline = time.monotonic() + 120
            while True:  # Serve replaces the replica; the daemons play on meanwhile
                try:
                    if await asyncio.to_thread(lambda: daemons[0].engine.info()["pid"]):
                        break
                except (ServiceUnavailableError, RemoteRequestError):
                    pass
                assert time.monotonic() < deadline, "the service did not come back"
                await asyncio.gather(*(d.play(0.5) for d in daemons))
            await asyncio.gather(*(d.play(12.0) for d in daemons))
            return [[q.get_nowait() for _ in range(q.qsize())] for q in queues]
        finally:
            for d in daemons:
                await d.close(0.05)

    for events in asyncio.run(main()):
        engines = [e.data.engine for e in events if e.type == "segment_started"]
        assert engines[0] == "remote" and "builtin" in engines, engines
        assert engines[-1] == "remote", "back on the service once it is"
        assert any("built-in engine takes over" in e.data.message for e in events if e.type == "error")
        assert not [e for e in events if e.type == "underrun"]
