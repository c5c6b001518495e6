"""End to end: the real daemon (built-in engine, file sink) steered over the websocket.

Short sessions of 4-s clips on a sped-up file sink, so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from web.harness import daemon_overrides, running_daemon, silent_runs, sounding_span
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from musicmed_stream.audio_io import read_audio
from musicmed_stream.control.client import ControlClient, ControlError, DaemonUnreachableError
from musicmed_stream.control.protocol import BaseEventMessage as EventMessage

TARGET = (0.8, 0.6)
MAX_GAP_S = 0.02  # the listener never hears more than a few ms of silence mid-session


def distance(a: dict[str, Any], b: tuple[float, float]) -> float:
    return math.hypot(a["valence"] - b[0], a["arousal"] - b[1])


def test_retarget_mid_session_replans_from_the_current_position(tmp_path: Path, jamendo_dir: Path) -> None:
    async def scenario() -> tuple[list[EventMessage], dict[str, Any], dict[str, Any], int]:
        async with (
            running_daemon(tmp_path, jamendo_dir, speed=4.0) as running,
            await ControlClient.connect(running.server.url) as client,
        ):
            await client.subscribe()
            first = await client.start("sad", "calm", minutes=0.5, clip_seconds=4, seed=3)
            events: list[EventMessage] = []
            reply: dict[str, Any] = {}
            heard_at_command = -1
            async with asyncio.timeout(60):
                async for event in client.events():
                    events.append(event)
                    if event.event == "segment_started" and event.data.index == 1 and not reply:
                        heard_at_command = event.data.index
                        reply = await client.set_target(TARGET)
                    if event.event == "session_ended":
                        break
            return events, first, reply, heard_at_command

    events, first, reply, heard = asyncio.run(scenario())
    old_plan = first["plan"]
    changed = [e for e in events if e.event == "plan_changed"]
    assert len(changed) == 1
    from_index = changed[0].data.from_index
    assert from_index == reply["from_index"]
    # Re-planned from where the listener is: the next segment after the one being heard (or the one
    # after it, if the feeder had already rendered into it).
    assert heard + 1 <= from_index <= heard + 2
    new_plan = changed[0].data.plan
    assert (new_plan["target"]["valence"], new_plan["target"]["arousal"]) == pytest.approx(TARGET)
    keep = [(s["valence"], s["arousal"]) for s in new_plan["segments"][:from_index]]
    assert keep == [(s["valence"], s["arousal"]) for s in old_plan["segments"][:from_index]]

    started = [e.data.model_dump() for e in events if e.event == "segment_started"]
    assert [s["index"] for s in started] == list(range(len(new_plan["segments"])))  # none skipped
    after = [s for s in started if s["index"] >= from_index]
    steps = [distance(s, TARGET) for s in after]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(steps)), steps  # toward the target
    assert steps[0] > 0.5 and steps[-1] == pytest.approx(0.0, abs=1e-6)
    ended = [e for e in events if e.event == "session_ended"]
    assert ended and ended[0].data.reason == "finished"
    assert not [e for e in events if e.event == "underrun"]

    # The recording: sound from the first segment to the end, no gap at the re-target cut-in.
    audio, rate = read_audio(tmp_path / "recording.wav")
    assert max(silent_runs(audio, rate), default=0.0) <= MAX_GAP_S
    first_sound, last_sound = sounding_span(audio, rate)
    expected = ended[0].data.played_s - started[0]["start_s"]
    assert last_sound - first_sound == pytest.approx(expected, abs=0.5)


class ServeProcess:
    """``musicmed-stream serve`` in a subprocess; reads the control port from its log."""

    def __init__(self, folder: Path, jamendo: Path, env: dict[str, str], *args: str) -> None:
        overrides = daemon_overrides(folder, jamendo, speed=1.0)
        flags = [
            "--engine", "builtin", "--sink", "file", "--sink-file", overrides["sink.file"],
            "--speed", "1", "--state-dir", overrides["service.state_dir"], "--no-resume", "--port", "0",
        ]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith("MUSICMED_")}  # no stray settings
        env = base | {"MUSICMED_SESSION_JAMENDO": str(jamendo), "MUSICMED_SERVICE_WARMUP": "false"} | env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "musicmed_stream.cli.main", "serve", *flags, *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.log: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60) or self.port is None:
            self.stop()
            raise AssertionError("serve did not report its control port:\n" + "".join(self.log))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"control channel listening on \S+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self._ready.set()
        self._ready.set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def test_serve_subprocess_survives_bad_clients(tmp_path: Path, jamendo_dir: Path) -> None:
    env = {
        "MUSICMED_CONTROL_MAX_MESSAGE_BYTES": "4096",
        "MUSICMED_CONTROL_RATE_LIMIT_PER_SECOND": "5",
        "MUSICMED_PLAYBACK_FADE_SECONDS": "0.5",
    }
    serve = ServeProcess(
        tmp_path, jamendo_dir, env, "--token", "t0ken", "--start-from", "sad", "--start-to", "calm",
        "--minutes", "2", "--clip-seconds", "4",
    )  # fmt: skip

    async def scenario() -> None:
        with pytest.raises(ControlError, match="requires a token"):
            await ControlClient.connect(serve.url)
        with pytest.raises(ControlError, match="wrong token"):
            await ControlClient.connect(serve.url, token="guess")
        with pytest.raises(DaemonUnreachableError, match="401"):
            await ControlClient.connect(serve.url + "?token=guess")

        async with await ControlClient.connect(serve.url, token="t0ken") as client:
            await client.subscribe(["segment_started"])
            before = await client.wait_for_event("segment_started", timeout=30)

            headers = {"Authorization": "Bearer t0ken"}
            async with connect(serve.url, additional_headers=headers) as ws:
                assert json.loads(await ws.recv())["auth_required"] is False
                for garbage, code in (
                    ("{{{", "bad_json"),
                    ('{"type": "launch"}', "unknown_command"),
                    ('{"type": "volume", "volume": 7}', "bad_message"),
                    ('{"type": "set_target", "target": "no-such-feeling"}', "rejected"),
                ):
                    await ws.send(garbage)
                    reply = json.loads(await ws.recv())
                    assert (reply["type"], reply["code"]) == ("error", code), reply
                await ws.send(json.dumps({"type": "status", "pad": "x" * 8000}))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009

            async with connect(serve.url, additional_headers=headers) as ws:
                await ws.recv()
                for i in range(30):  # 5/s with bursts of 10: most of these are refused
                    await ws.send(json.dumps({"type": "status", "id": i}))
                replies = []
                with contextlib.suppress(ConnectionClosed):
                    while len(replies) < 30:
                        replies.append(json.loads(await ws.recv()))
                assert replies[0]["type"] == "ok"
                assert any(r.get("code") == "rate_limited" for r in replies)

            # The daemon played on through all of it.
            status = await client.status()
            assert status["state"] == "playing"
            after = await client.wait_for_event(
                "segment_started", timeout=30, where=lambda e: e.data.index > before.data.index
            )
            assert after.data.index > before.data.index

    try:
        asyncio.run(scenario())
    finally:
        code = serve.stop()
    assert code == 0, "".join(serve.log)
    audio, rate = read_audio(tmp_path / "recording.wav")
    assert max(silent_runs(audio, rate), default=0.0) <= MAX_GAP_S
