"""Whole sessions with the tiny MusicGen: the offline render and the daemon, end to end (CPU)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_musicgen import one_torch_thread

from musicmed_stream.engines.registry import create_engine
from musicmed_stream.planner.iso import plan_session
from musicmed_stream.planner.types import PlanSettings


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def tiny_dir(tiny_musicgen_dir):
    return tiny_musicgen_dir


def test_rendered_session_continues_every_clip_from_the_previous_tail(tiny_dir, tmp_path):
    from musicmed_stream.render import render_session

    engine = create_engine("musicgen", musicgen={"model": str(tiny_dir), "tail_seconds": 0.5})
    plan = plan_session("sad", "calm", PlanSettings(minutes=0.05, clip_seconds=0.6, seed=1))
    records = []
    result = render_session(plan, engine, tmp_path / "out", on_clip=records.append)
    assert len(records) == len(plan.segments) >= 4
    for record, segment in zip(records, plan.segments, strict=True):
        assert record.index == segment.index
        assert record.audio.shape[0] == round(segment.duration_s * engine.sample_rate)
        assert record.info["text_prompt"] == segment.prompt
    assert records[0].info["prompt_audio_seconds"] == 0
    for record in records[1:]:
        # The audio prompt is the previous clip's (silence-trimmed) tail, capped at tail_seconds.
        assert 0 < record.info["prompt_audio_seconds"] <= 0.5
        assert record.info["prompt_frames"] > 0
    session, rate = sf.read(result.files["session"], dtype="float32")
    assert rate == result.sample_rate and np.all(np.isfinite(session))
    assert np.sqrt(np.mean(session**2)) > 1e-4


def test_daemon_plays_a_musicgen_session(tiny_dir, tmp_path):
    from musicmed_stream.control.api import StartOptions
    from musicmed_stream.player.sinks import FileSink
    from musicmed_stream.service.config import load_config
    from musicmed_stream.service.daemon import Daemon

    engine = create_engine("musicgen", musicgen={"model": str(tiny_dir), "stream_chunk_seconds": 0.2})
    settings = {
        "session.clip_seconds": 1.0,
        "session.minutes": 0.1,
        "playback.buffer_seconds": 2.0,
        "playback.buffer_event_seconds": 0.5,
        "playback.fade_seconds": 0.2,
        "service.warmup": False,
    }
    config = load_config(overrides=settings, env={})
    sink = FileSink(tmp_path / "played.wav", 32000, 1, 1024, speed=4.0)
    daemon = Daemon(config, engine, sink, tmp_path / "state")

    async def main():
        await daemon.start()
        queue = daemon.subscribe()
        try:
            info = await daemon.start_session(StartOptions("sad", "calm", seed=2))
            events = []
            while True:
                event = await asyncio.wait_for(queue.get(), 120)
                events.append(event)
                if event.type == "session_ended":
                    return info, events
        finally:
            await daemon.close(fade_seconds=0.05)

    info, events = asyncio.run(main())
    started = [e.data.index for e in events if e.type == "segment_started"]
    assert started == list(range(len(info.plan["segments"])))
    assert events[-1].data.reason == "finished"
    assert not [e for e in events if e.type == "error"]
    audio, rate = sf.read(tmp_path / "played.wav", dtype="float32", always_2d=True)
    assert rate == 32000
    assert audio.shape[0] >= 0.8 * sum(s["duration_s"] for s in info.plan["segments"]) * rate
    assert np.abs(audio).max() > 0


class FinishTimes:
    """The tiny MusicGen engine as it is, noting when each streamed clip is complete (the real
    engine does all the work; this only watches)."""

    def __init__(self, engine):
        self.engine = engine
        self.name, self.sample_rate, self.channels = engine.name, engine.sample_rate, engine.channels
        self.stream_chunk_seconds = engine.stream_chunk_seconds
        self.finished: list[float] = []

    def generate(self, segment, previous, *, seed, cancel=None):
        return self.engine.generate(segment, previous, seed=seed, cancel=cancel)

    def stream(self, segment, previous, *, seed, cancel=None):
        yield from self.engine.stream(segment, previous, seed=seed, cancel=cancel)
        self.finished.append(time.monotonic())


def test_the_first_streamed_seconds_play_before_the_clip_is_finished(tiny_dir, tmp_path):
    from musicmed_stream.control.api import StartOptions
    from musicmed_stream.player.sinks import ManualSink
    from musicmed_stream.service.config import load_config
    from musicmed_stream.service.daemon import Daemon

    engine = FinishTimes(
        create_engine("musicgen", musicgen={"model": str(tiny_dir), "stream_chunk_seconds": 0.2})
    )
    settings = {
        "session.clip_seconds": 6.0,
        "session.minutes": 0.1,
        "service.warmup": False,
        "session.jamendo": "",
    }
    config = load_config(overrides=settings, env={})
    daemon = Daemon(config, engine, ManualSink(32000, 1, 512), tmp_path / "state")

    async def main():
        await daemon.start()
        try:
            await daemon.start_session(StartOptions("sad", "calm", seed=2))
            first_sound = None
            deadline = time.monotonic() + 240
            while not engine.finished and time.monotonic() < deadline:  # play as the audio comes,
                await daemon.play(512 / 32000, wait=False)  # without waiting for the producer
                if first_sound is None and np.abs(daemon.sink.blocks[-1]).max() > 0:
                    first_sound = time.monotonic()
                await asyncio.sleep(0.005)
            return first_sound
        finally:
            await daemon.close(fade_seconds=0.05)

    first_sound = asyncio.run(main())
    assert engine.finished, "the first clip was generated"
    assert first_sound is not None and first_sound < engine.finished[0], "sound reached the sink first"
