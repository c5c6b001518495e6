"""The daemon end to end with the built-in engine and the file sink (sped up, short clips)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from musicmed_stream.engines.base import Clip, Continuation
from musicmed_stream.engines.builtin import BuiltinEngine
from musicmed_stream.errors import MusicMedError
from musicmed_stream.planner.types import Segment
from musicmed_stream.player.sinks import FileSink
from musicmed_stream.service.api import Event, StartOptions
from musicmed_stream.service.config import load_config
from musicmed_stream.service.daemon import STATE_FILE, Daemon

SR = 44100
BLOCK = 1024


class TwistedEngine:
    """The built-in engine with a twist, standing in for engines the daemon must cope with (not a
    mock: the clips are real): one that raises on a segment, one slower than real time, one that
    delivers 32-kHz mono like MusicGen."""

    def __init__(self, fail_index: int = -1, delay: float = 0.0, mono: bool = False) -> None:
        self.inner = BuiltinEngine(sample_rate=32000 if mono else 44100)
        self.name = "slow" if delay else "twisted"
        self.sample_rate, self.channels = self.inner.sample_rate, 1 if mono else 2
        self.fail_index, self.delay, self.mono = fail_index, delay, mono

    def generate(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Clip:
        if segment.index == self.fail_index:
            raise RuntimeError(f"synthetic failure on segment {segment.index}")
        if segment.index > 0:
            time.sleep(self.delay)
        clip = self.inner.generate(segment, previous, seed=seed, cancel=cancel)
        if not self.mono:
            return clip
        return Clip(
            clip.audio.mean(axis=1, keepdims=True), clip.sample_rate, clip.segment_index, state=clip.state
        )


def make_daemon(tmp_path: Path, engine: Any = None, speed: float = 3.0, **overrides: Any) -> Daemon:
    """A daemon recording to ``played.wav`` at ``speed`` times real time (``daemon.sink``: FileSink)."""
    settings = {
        "session.clip_seconds": 4.0,
        "session.minutes": 0.3,
        "playback.buffer_seconds": 8.0,
        "playback.buffer_event_seconds": 0.5,
        "playback.fade_seconds": 0.5,
        # the ring covers ~0.15-0.3 s of wall time at these sped-up paces (the default 1 s would be
        # 0.25-0.5 s), so that the tests hear a command soon after giving it
        "playback.ring_seconds": 0.6,
        "service.warmup": False,
        **overrides,
    }
    config = load_config(overrides=settings, env={})
    sink = FileSink(tmp_path / "played.wav", SR, 2, BLOCK, speed=speed)
    return Daemon(config, engine or BuiltinEngine(), sink, tmp_path / "state")


async def collect_until(
    queue: asyncio.Queue[Event], kind: str, events: list[Event], timeout: float = 60.0, **match: Any
) -> Event:
    """Gather events into ``events`` until one of ``kind`` (with ``match`` in its data) arrives."""

    async def wait() -> Event:
        while True:
            event = await queue.get()
            events.append(event)
            if event.type == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event

    return await asyncio.wait_for(wait(), timeout)


def run_with(daemon: Daemon, body: Callable[[Daemon, asyncio.Queue[Event]], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        await daemon.start()
        queue = daemon.subscribe()
        try:
            return await body(daemon, queue)
        finally:
            await daemon.close(fade_seconds=0.05)

    return asyncio.run(main())


def recording(tmp_path: Path) -> np.ndarray:
    audio, rate = sf.read(tmp_path / "played.wav", dtype="float32", always_2d=True)
    assert rate == SR
    return audio


def silent_frames(audio: np.ndarray) -> int:
    """All-zero frames between the first and the last sound."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 0)
    return int((np.abs(audio[loud[0] : loud[-1] + 1]).max(axis=1) == 0).sum())


def assert_no_gap(audio: np.ndarray, sink: FileSink) -> None:
    """No silence after the first sound, except blocks the sink itself reported as underruns.

    The daemon never schedules silence; an underrun means the feeder thread got no CPU in time
    (a loaded test machine at a sped-up pace) and is counted, so it is told apart here.
    """
    _, underrun_frames = sink.counters()
    tolerance = int(0.005 * SR)
    if underrun_frames == 0:
        assert longest_silence(audio) <= tolerance, "a gap after the first sound"
    else:
        assert silent_frames(audio) <= underrun_frames + tolerance, "silence beyond the sink's underruns"


def longest_silence(audio: np.ndarray) -> int:
    """Longest run of all-zero frames between the first and the last sound."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 0)
    silent = np.abs(audio[loud[0] : loud[-1] + 1]).max(axis=1) == 0
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((stops - starts).max()) if len(starts) else 0


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def test_a_short_session_plays_every_segment_without_a_gap(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, speed=2.0)

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        info = await d.start_session(StartOptions("sad", "calm", seed=3))
        assert d.status()["state"] == "playing"
        await collect_until(queue, "session_ended", events)
        return events, info

    events, info = run_with(daemon, body)
    n_segments = len(info["plan"]["segments"])
    started = [e.data["index"] for e in events if e.type == "segment_started"]
    assert started == list(range(n_segments))
    assert events[-1].data["reason"] == "finished"
    assert "buffer_level" in types(events)
    # segment_started carries the planned segment, at increasing session times
    starts = [e.data["start_s"] for e in events if e.type == "segment_started"]
    assert starts == sorted(starts)
    assert [e.data["prompt"] for e in events if e.type == "segment_started"] == [
        s["prompt"] for s in info["plan"]["segments"]
    ]
    audio = recording(tmp_path)
    assert_no_gap(audio, daemon.sink)
    assert np.abs(audio).max() <= 1.0
    assert not (tmp_path / "state" / STATE_FILE).exists(), "a finished session leaves no state to resume"


def test_an_engine_failure_is_bridged_and_the_session_goes_on(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, engine=TwistedEngine(fail_index=2))

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        info = await d.start_session(StartOptions("sad", "calm"))
        await collect_until(queue, "session_ended", events)
        return events, info

    events, info = run_with(daemon, body)
    errors = [e for e in events if e.type == "error"]
    assert len(errors) == 1
    assert "segment 2" in errors[0].data["where"]
    assert "synthetic failure" in errors[0].data["message"]
    assert any(e.type == "bridge" and e.data["index"] == 3 for e in events)
    started = [e.data["index"] for e in events if e.type == "segment_started"]
    assert started == [i for i in range(len(info["plan"]["segments"])) if i != 2]
    assert events[-1].data["reason"] == "finished"
    assert_no_gap(recording(tmp_path), daemon.sink)


async def _advance(d: Daemon, seconds: float) -> tuple[int, int]:
    """Frames the sink had read before and after ``seconds`` of wall time."""
    before = d.ring.frames_read
    await asyncio.sleep(seconds)
    return before, d.ring.frames_read


def test_pause_resume_volume_skip_and_stop(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, speed=2.0, **{"session.minutes": 1.0, "session.clip_seconds": 6.0})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> dict[str, Any]:
        events: list[Event] = []
        await d.start_session(StartOptions("angry", "calm"))
        await collect_until(queue, "segment_started", events, index=0)
        out: dict[str, Any] = {}
        await d.skip()  # segment 1 was planned to start at 4.5 s (6-s clips, 1.5-s overlap)
        skipped = await collect_until(queue, "segment_started", events, timeout=5.0, index=1)
        out["skip_start_s"] = skipped.data["start_s"]
        await d.pause()
        assert d.status()["state"] == "paused"
        await asyncio.sleep(0.6)  # the pause ramp and the queued ring drain
        out["paused"] = await _advance(d, 0.5)
        position = d.status()["played_s"]
        await asyncio.sleep(0.2)
        assert d.status()["played_s"] == position, "the session does not advance while paused"
        await d.resume()
        await asyncio.sleep(0.6)
        out["resumed"] = await _advance(d, 0.3)
        await d.set_volume(0.0)
        assert d.status()["volume"] == 0.0
        await asyncio.sleep(0.6)
        out["muted"] = await _advance(d, 0.3)
        await d.set_volume(1.0)
        with pytest.raises(MusicMedError, match="volume"):
            await d.set_volume(1.5)
        await d.stop(0.2)
        out["events"] = events
        while not queue.empty():
            events.append(queue.get_nowait())
        out["status"] = d.status()
        return out

    out = run_with(daemon, body)
    audio = recording(tmp_path)
    silent = lambda a, b: not np.abs(audio[a:b]).any()  # noqa: E731
    assert silent(*out["paused"]), "paused: the sink plays silence"
    assert not silent(*out["resumed"]), "resumed: sound again"
    assert silent(*out["muted"]), "volume 0: silence"
    assert out["skip_start_s"] < 4.5, "the skipped-to segment started before its planned time"
    kinds = types(out["events"])
    assert {"paused", "resumed", "volume", "session_ended"} <= set(kinds)
    assert out["events"][-1].data["reason"] == "stopped"
    assert out["status"]["state"] == "idle"


def test_retarget_replans_from_the_current_segment_and_is_heard_soon(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, speed=1.0, **{"session.minutes": 1.0, "session.clip_seconds": 5.0})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        await d.start_session(StartOptions("sad", "calm"))
        await collect_until(queue, "segment_started", events, index=1)
        result = await d.set_target("happy")
        first = await collect_until(
            queue, "segment_started", events, timeout=10.0, index=result["from_index"]
        )
        await d.stop(0.1)
        return events, result | {"first": first.data}

    events, result = run_with(daemon, body)
    changed = [e for e in events if e.type == "plan_changed"]
    assert len(changed) == 1 and changed[0].data["reason"] == "target"
    assert result["from_index"] == 2
    new_segment = result["plan"]["segments"][2]
    assert result["first"]["prompt"] == new_segment["prompt"]
    assert result["plan"]["target_label"] == "happy"
    # 5-s clips overlapping by 1.25 s: segment 2 was due at 7.5 s; the new path is cut in earlier
    assert result["first"]["start_s"] < 2 * 3.75


def test_on_end_hold_keeps_playing_the_target_state(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, speed=4.0, **{"session.minutes": 0.2, "session.on_end": "hold"})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        info = await d.start_session(StartOptions("sad", "calm"))
        n = len(info["plan"]["segments"])
        await collect_until(queue, "segment_started", events, index=n + 1)
        assert d.status()["state"] == "playing"
        return events, info

    events, info = run_with(daemon, body)
    last = info["plan"]["segments"][-1]
    held = [
        e.data
        for e in events
        if e.type == "segment_started" and e.data["index"] >= len(info["plan"]["segments"])
    ]
    assert len(held) == 2
    for data in held:
        assert (data["valence"], data["arousal"], data["prompt"]) == (
            last["valence"],
            last["arousal"],
            last["prompt"],
        )
    assert "session_ended" not in types(events)


def test_the_state_file_names_the_playing_segment_and_its_continuation(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, speed=2.0, **{"session.minutes": 1.0})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[dict, np.ndarray, int, list[str]]:
        events: list[Event] = []
        await d.start_session(StartOptions("sad", "calm", seed=11))
        await collect_until(queue, "segment_started", events, index=2)
        await asyncio.sleep(0.3)
        state = tmp_path / "state"
        record = json.loads((state / STATE_FILE).read_text())
        tail, rate = sf.read(state / record["continuation"]["tail"], dtype="float32", always_2d=True)
        return record, tail, rate, sorted(p.name for p in state.glob("tail-*.wav"))

    record, tail, rate, tails = run_with(daemon, body)
    assert record["index"] == 2
    assert record["seed"] == 11
    assert record["continuation"]["tail"] == "tail-00002.wav"
    assert rate == SR and len(tail) > 0
    assert tails == ["tail-00002.wav"], "older tails are removed"
    assert not (tmp_path / "state" / STATE_FILE).exists(), "stopping the session clears its state"


def test_a_slow_subscriber_loses_its_oldest_events_not_the_daemon(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> list[Event]:
        for i in range(300):
            await d.set_volume(i / 1000)
        return [queue.get_nowait() for _ in range(queue.qsize())]

    kept = run_with(daemon, body)
    volumes = [e.data["volume"] for e in kept if e.type == "volume"]
    assert len(kept) == 256
    assert volumes[-1] == 0.299
    assert volumes[0] > 0.0, "the oldest events were dropped"


def test_commands_without_a_session_and_bad_requests_are_clear_errors(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> None:
        with pytest.raises(MusicMedError, match="no session"):
            await d.skip()
        with pytest.raises(MusicMedError, match="no session"):
            await d.set_target("calm")
        with pytest.raises(MusicMedError):
            await d.start_session(StartOptions("not-an-emotion", "calm"))
        with pytest.raises(MusicMedError, match="minutes"):
            await d.start_session(StartOptions("sad", "calm", minutes=-1))
        assert d.status()["state"] == "idle"

    run_with(daemon, body)


def test_same_seed_and_config_play_the_same_samples(tmp_path: Path) -> None:
    def play(folder: Path) -> np.ndarray:
        folder.mkdir()
        daemon = make_daemon(folder, speed=4.0, **{"session.minutes": 0.15})

        async def body(d: Daemon, queue: asyncio.Queue[Event]) -> None:
            await d.start_session(StartOptions("tense", "calm", seed=21))
            await collect_until(queue, "session_ended", [])

        run_with(daemon, body)
        if daemon.sink.counters()[0]:  # a starved feeder thread is not the daemon's doing
            pytest.skip("the machine was too busy to keep pace (sink underruns)")
        audio = recording(folder)
        loud = np.flatnonzero(np.abs(audio).max(axis=1) > 0)
        return audio[loud[0] : loud[-1] + 1]

    first, second = play(tmp_path / "a"), play(tmp_path / "b")
    assert len(first) > 5 * SR
    np.testing.assert_array_equal(first, second)


def test_clips_of_another_rate_and_channel_count_are_converted_for_the_sink(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, engine=TwistedEngine(mono=True), speed=4.0, **{"session.minutes": 0.15})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        info = await d.start_session(StartOptions("sad", "calm"))
        await collect_until(queue, "session_ended", events)
        return events, info

    events, info = run_with(daemon, body)
    segments = info["plan"]["segments"]
    assert [e.data["index"] for e in events if e.type == "segment_started"] == list(range(len(segments)))
    audio = recording(tmp_path)
    loud = audio[np.abs(audio).max(axis=1) > 0]
    planned = segments[-1]["start_s"] + segments[-1]["duration_s"]
    # 3 clips of 4 s overlapping by 1 s: 10 s played at 44.1 kHz; unconverted, ~7.3 s
    assert len(loud) > 0.8 * planned * SR, "the 32-kHz clips are resampled to the sink's rate"
    np.testing.assert_array_equal(loud[:, 0], loud[:, 1])  # mono duplicated to both channels
    assert_no_gap(audio, daemon.sink)


def test_a_stalled_block_path_is_reported_as_underruns(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, speed=2.0, **{"session.minutes": 1.0, "playback.ring_seconds": 0.1})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> list[Event]:
        events: list[Event] = []
        await d.start_session(StartOptions("sad", "calm"))
        await collect_until(queue, "segment_started", events, index=0)

        def stall() -> None:  # the feeder cannot render for 0.3 s of wall time (0.6 s of audio)
            with d._lock:
                time.sleep(0.3)

        await asyncio.to_thread(stall)
        await collect_until(queue, "underrun", events, timeout=5.0)
        await asyncio.sleep(0.3)  # the monitor reports what accumulates every 20 ms
        while not queue.empty():
            events.append(queue.get_nowait())
        return events

    events = run_with(daemon, body)
    reported = sum(e.data["frames"] for e in events if e.type == "underrun")
    _, counted = daemon.sink.counters()
    assert 0 < reported <= counted
    assert reported >= int(0.3 * SR), "most of the stall was heard as silence and reported"


def test_a_slow_main_engine_is_bridged_by_built_in_clips(tmp_path: Path) -> None:
    overrides = {"session.minutes": 0.15, "playback.bridge": "builtin", "playback.buffer_seconds": 2.0}
    daemon = make_daemon(tmp_path, engine=TwistedEngine(delay=2.5), speed=2.0, **overrides)

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        info = await d.start_session(StartOptions("sad", "calm"))
        await collect_until(queue, "session_ended", events, timeout=90)
        return events, info

    events, info = run_with(daemon, body)
    bridges = [e.data for e in events if e.type == "bridge"]
    assert any("built-in clip while the slow engine is late" in b["reason"] for b in bridges)
    started = [e.data["index"] for e in events if e.type == "segment_started"]
    assert started == list(range(len(info["plan"]["segments"]))), "every segment still plays"
    assert_no_gap(recording(tmp_path), daemon.sink)


def test_the_configured_mapping_and_crossfade_reach_the_plan_and_the_replan(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"tags": {"blue": {"kind": "mood", "emotion": "sad"}}}))
    overrides = {"session.mapping": str(mapping), "chain.crossfade_fraction": 0.5, "session.minutes": 0.5}
    daemon = make_daemon(tmp_path, speed=1.0, **overrides)

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[dict, dict]:
        info = await d.start_session(StartOptions("blue", "happy"))
        changed = await d.set_target("calm")
        await d.stop(0.05)
        return info, changed

    info, changed = run_with(daemon, body)
    # The only mood tag of the configured mapping names every clip, before and after re-planning.
    assert {s["mood"] for s in info["plan"]["segments"]} == {"blue"}
    assert {s["mood"] for s in changed["plan"]["segments"]} == {"blue"}
    assert info["plan"]["meta"]["mapping"] == str(mapping.resolve())
    # 4-s clips overlapping by 2 s: 14 clips play 2 + 14 * 2 = 30 s.
    assert info["plan"]["settings"]["crossfade_fraction"] == 0.5
    assert [s["start_s"] for s in info["plan"]["segments"]] == [2.0 * i for i in range(14)]


def test_a_daemon_session_is_evaluated_from_its_recording_and_event_log(tmp_path: Path) -> None:
    from musicmed_stream.evaluation import evaluate_run

    log = tmp_path / "run" / "events.jsonl"
    config = load_config(
        env={},
        overrides={
            "session.clip_seconds": 4.0,
            "session.minutes": 0.3,
            "playback.buffer_seconds": 8.0,
            "playback.fade_seconds": 0.5,
            "playback.ring_seconds": 0.6,
            "service.warmup": False,
            "service.event_log": str(log),
        },
    )
    sink = FileSink(tmp_path / "run" / "recording.wav", SR, 2, BLOCK, speed=3.0)
    daemon = Daemon(config, BuiltinEngine(), sink, tmp_path / "state")

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> tuple[list[Event], dict]:
        events: list[Event] = []
        info = await d.start_session(StartOptions("sad", "calm", seed=5))
        await collect_until(queue, "session_ended", events)
        return events, info

    events, info = run_with(daemon, body)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    # Every event, in order, with its data (the subscriber saw them from session_started on).
    assert [(x["type"], x["data"]) for x in lines[-len(events) :]] == [
        (e.type, json.loads(json.dumps(e.data))) for e in events
    ]
    plan = info["plan"]
    # The played session follows the plan's crossfaded grid: 6 clips of 4 s every 3 s, 19 s.
    # (session times count from the start command, before the first clip is ready)
    starts = [e.data["start_s"] for e in events if e.type == "segment_started"]
    assert [t - starts[0] for t in starts] == pytest.approx([s["start_s"] for s in plan["segments"]], abs=0.1)
    assert events[-1].data["played_s"] - starts[0] == pytest.approx(19.0, abs=0.75)

    metrics = evaluate_run(tmp_path / "run", out_dir=tmp_path / "eval")
    assert metrics["run"]["kind"] == "daemon"
    assert [c["mood"] for c in metrics["clips"]] == [s["mood"] for s in plan["segments"]]
    assert [c["start_s"] for c in metrics["clips"]] == pytest.approx(starts)
    assert metrics["comfort"]["clipped_samples"] == 0
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_the_event_log_can_be_disabled(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path, **{"service.event_log": ""})

    async def body(d: Daemon, queue: asyncio.Queue[Event]) -> None:
        await d.start_session(StartOptions("sad", "calm"))
        await d.stop(0.05)

    run_with(daemon, body)
    assert not list(tmp_path.rglob("*.jsonl"))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_a_full_disk_is_logged_once_and_the_event_log_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    from musicmed_stream.service.eventlog import EventLog

    log = EventLog(Path("/dev/full"))
    with caplog.at_level("ERROR", logger="musicmed_stream.service.eventlog"):
        for i in range(5):
            log.write(Event("volume", {"volume": i / 10}))
        log.close()
    assert (log.written, log.failed) == (0, 5)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "/dev/full" in errors[0].getMessage()
