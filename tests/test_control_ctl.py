"""``musicmed-stream ctl`` against a control server running in a background thread."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from web.fake_controller import FakeController

from musicmed_stream.cli.main import main
from musicmed_stream.control.api import StartOptions
from musicmed_stream.control.server import ControlServer, start_control_server
from musicmed_stream.control.settings import ControlSettings

Capture = pytest.CaptureFixture[str]


@dataclass
class Served:
    server: ControlServer
    controller: FakeController
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` (a coroutine function) on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(10)


def serve_in_thread(**options: Any) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    ready: Future[Served] = Future()

    def target() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            controller = FakeController()
            server = await start_control_server(controller, ControlSettings.from_dict({"port": 0, **options}))
            ready.set_result(Served(server, controller, loop))

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    served = ready.result(10)
    try:
        yield served
    finally:
        served.call(served.server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def served() -> Iterator[Served]:
    yield from serve_in_thread()


@pytest.fixture
def served_with_token() -> Iterator[Served]:
    yield from serve_in_thread(token="letmein")


def ctl(served: Served, *args: str) -> int:
    return main(["ctl", "--url", served.server.url, *args])


def test_start_then_status(served: Served, capsys: Capture) -> None:
    assert ctl(served, "start", "sad", "calm", "--minutes", "3", "--clip-seconds", "5", "--seed", "9") == 0
    out = capsys.readouterr().out
    assert out.startswith("ok") and "session s1" in out and "5 segments" in out
    options = served.controller.calls[0][1]
    assert (options.start, options.target, options.minutes, options.clip_seconds, options.seed) == (
        "sad",
        "calm",
        3.0,
        5.0,
        9,
    )
    assert options.path is None and options.temperature is None
    assert ctl(served, "status") == 0
    out = capsys.readouterr().out
    assert "state:    playing" in out and "volume:   1.00" in out


def test_json_output_and_options_after_the_command(served: Served, capsys: Capture) -> None:
    assert main(["ctl", "status", "--json", "--url", served.server.url]) == 0
    assert json.loads(capsys.readouterr().out) == served.controller.status()


def test_every_command_reaches_the_daemon(served: Served, capsys: Capture) -> None:
    assert ctl(served, "start", "sad", "calm") == 0
    assert ctl(served, "set-target", "--", "-0.25,0.5") == 0
    assert ctl(served, "volume", "0.4") == 0
    assert ctl(served, "pause") == 0
    assert ctl(served, "resume") == 0
    assert ctl(served, "skip") == 0
    assert ctl(served, "stop", "--fade", "2") == 0
    calls = served.controller.calls
    assert served.controller.names() == "start_session set_target set_volume pause resume skip stop"
    assert calls[1][1] == "-0.25,0.5" and calls[2][1] == 0.4 and calls[6][1] == 2.0


def test_errors_are_one_line_with_exit_status_2(served: Served, capsys: Capture) -> None:
    assert ctl(served, "pause") == 2  # no session: the daemon refuses
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no session is running" in err
    assert ctl(served, "volume", "1.5") == 2  # refused before sending
    assert "less than or equal to 1" in capsys.readouterr().err
    assert ("set_volume", 1.5) not in served.controller.calls
    assert main(["ctl", "--url", "ws://127.0.0.1:9/ws", "--timeout", "2", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmed-stream: error: cannot reach the daemon") and err.count("\n") == 1


def test_token_from_flag_or_environment(
    served_with_token: Served, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MUSICMED_CONTROL_TOKEN", raising=False)
    assert ctl(served_with_token, "status") == 2
    assert "requires a token" in capsys.readouterr().err
    assert ctl(served_with_token, "--token", "nope", "status") == 2
    assert "wrong token" in capsys.readouterr().err
    assert ctl(served_with_token, "--token", "letmein", "status") == 0
    monkeypatch.setenv("MUSICMED_CONTROL_TOKEN", "letmein")
    assert ctl(served_with_token, "status") == 0


def test_follow_prints_events_until_the_session_ends(served: Served, capsys: Capture) -> None:
    controller = served.controller

    async def later() -> None:
        while not controller.queues:  # wait for ctl to subscribe
            await asyncio.sleep(0.01)
        await controller.start_session(StartOptions(start="tense", target="calm"))
        await controller.set_target("happy")
        await controller.stop()

    asyncio.run_coroutine_threadsafe(later(), served.loop)
    assert ctl(served, "follow") == 0
    lines = capsys.readouterr().out.splitlines()
    events = [line.split()[1] for line in lines]
    assert events == ["session_started", "segment_started", "plan_changed", "session_ended"]
    assert "reason=stopped" in lines[-1] and "from_index=1" in lines[2]


def test_follow_json_after_start(served: Served, capsys: Capture) -> None:
    controller = served.controller

    async def stop_soon() -> None:
        while controller.state != "playing":
            await asyncio.sleep(0.01)
        await controller.stop()

    asyncio.run_coroutine_threadsafe(stop_soon(), served.loop)
    assert ctl(served, "--json", "--follow", "start", "sad", "calm") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["session_id"] == "s1"  # the reply first, then the events it caused
    assert [m["event"] for m in lines[1:]] == ["session_started", "segment_started", "session_ended"]


def test_console_script_entry_point(served: Served) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "musicmed_stream.cli.main",
            "ctl",
            "--url",
            served.server.url,
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "idle"


def test_schema_subcommand_prints_the_committed_schema(capsys: Capture) -> None:
    from musicmed_stream.control.schema import SCHEMA_DIR, schema_filename

    assert main(["ctl", "schema"]) == 0
    assert capsys.readouterr().out == (SCHEMA_DIR / schema_filename()).read_text(encoding="utf-8")
    assert main(["ctl", "schema", "--check"]) == 0
