"""``musicmed-stream ctl`` against a control server in a background thread (a FakeController), and the status
line against the real daemon."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web.fake_controller import FakeController
from web.harness import running_daemon

from musicmed_stream.cli.ctl import clock
from musicmed_stream.cli.main import main
from musicmed_stream.control.api import StartOptions
from musicmed_stream.control.client import Connection
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


def test_start_then_status_line_against_a_known_plan(served: Served, capsys: Capture) -> None:
    assert ctl(served, "start", "sad", "calm", "--minutes", "3", "--clip-seconds", "5", "--seed", "9") == 0
    # The fake's plan: 5 clips of 30 s, each overlapping the next by 2.5 s: 2:20, not their 2:30.
    assert capsys.readouterr().out == "started s1: sad→calm, 5 parts, 2:20\n"
    options = served.controller.calls[0][1]
    assert (options.start, options.target, options.minutes, options.clip_seconds, options.seed) == (
        "sad",
        "calm",
        3.0,
        5.0,
        9,
    )
    assert options.path is None and options.temperature is None and options.replace is False
    assert ctl(served, "pause") == 0
    assert capsys.readouterr().out.startswith("[paused] 1/5 sad→calm 0:")
    served.controller._played = 41.4  # paused: the played time stands still
    assert ctl(served, "status") == 0
    assert capsys.readouterr().out == "[paused] 1/5 sad→calm 0:41/2:20 (30%) vol 100%\n"
    # A care limit, a capped volume and a sleep timer are on the line too.
    served.controller.max_volume = 0.6
    assert ctl(served, "volume", "80") == 0
    assert capsys.readouterr().out == "vol 60%\n"
    assert ctl(served, "sleep", "12") == 0
    assert capsys.readouterr().out == "sleep timer: fades out in 12:00\n"

    async def third_part() -> None:
        served.controller.emit_segment(2)

    served.call(third_part)
    heard = served.controller.plan["segments"][2]["emotion"]
    assert main(["ctl", "--url", served.server.url]) == 0  # no command: the status
    line = capsys.readouterr().out
    assert line == f"[paused] 3/5 {heard}→calm 0:41/2:20 (30%) sleep 12:00 vol 60% (limit 60%)\n", line


def test_status_json_is_the_raw_result_and_options_go_after_the_command(
    served: Served, capsys: Capture
) -> None:
    assert main(["ctl", "status", "--json", "--url", served.server.url]) == 0
    assert json.loads(capsys.readouterr().out) == served.controller.status(include_plan=True)
    assert main(["ctl", "--json", "--url", served.server.url]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "idle"


def test_plan_lists_the_parts_from_the_one_playing(served: Served, capsys: Capture) -> None:
    assert ctl(served, "plan") == 0
    assert capsys.readouterr().out == "no session plays\n"
    assert ctl(served, "start", "sad", "calm") == 0

    async def third_part() -> None:
        served.controller.emit_segment(2)

    served.call(third_part)
    capsys.readouterr()
    assert ctl(served, "plan") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == "sad→calm, 5 parts, 2:20; playing part 3"
    segments = served.controller.plan["segments"]
    assert [row[1:].split()[0] for row in rows] == ["3", "4", "5"]  # from the one playing on
    assert rows[0].startswith("▶") and not rows[1].startswith("▶")
    for row, segment in zip(rows, segments[2:], strict=True):
        assert clock(segment["start_s"]) in row and segment["emotion"] in row
        assert f"{segment['valence']:+.2f} {segment['arousal']:+.2f}" in row
    assert ctl(served, "plan", "--all") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(segments)


def test_a_status_carries_the_plan_only_when_asked(served: Served, capsys: Capture) -> None:
    assert ctl(served, "start", "sad", "calm") == 0

    async def ask(plan: bool) -> dict[str, Any]:
        async with await Connection.connect(served.server.url) as client:
            return await client.status(plan=plan)

    assert served.call(ask, False)["plan"] is None
    assert served.call(ask, True)["plan"]["segments"] == served.controller.plan["segments"]
    assert ctl(served, "status", "--json") == 0  # --json: all of it
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["plan"] == served.controller.plan


def test_every_command_reaches_the_daemon(served: Served, capsys: Capture) -> None:
    assert ctl(served, "start", "sad", "calm") == 0
    assert ctl(served, "set-target", "-0.25,0.5") == 0  # a negative coordinate needs no --
    assert ctl(served, "set-target", "--", "-0.3,0.5") == 0  # ... and -- still works
    assert ctl(served, "volume", "0.4") == 0
    assert ctl(served, "pause") == 0
    assert ctl(served, "resume") == 0
    assert ctl(served, "skip") == 0
    assert ctl(served, "extend", "+5") == 0
    assert ctl(served, "extend", "-3") == 0
    assert ctl(served, "sleep", "30") == 0
    assert ctl(served, "sleep", "off") == 0
    assert ctl(served, "stop", "--fade", "2") == 0
    calls = served.controller.calls
    assert served.controller.names() == (
        "start_session set_target set_target set_volume pause resume skip extend extend sleep_timer"
        " sleep_timer stop"
    )
    assert [arg for _, arg in calls[1:]] == [
        "-0.25,0.5",
        "-0.3,0.5",
        0.4,
        None,
        None,
        None,
        5.0,
        -3.0,
        30.0,
        None,
        2.0,
    ]
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "re-planned from part 2: sad→-0.25,0.5, 5 parts, 2:20"
    # Five minutes more, after the skip to part 2: its three successors become 3 + 11 clips of the
    # 27.5-s grid, from 55 s on: 55 + 13 x 27.5 + 30 = 442.5 s.
    assert out[7] == "re-planned from part 3: sad→-0.3,0.5, 16 parts, 7:22"
    assert out[-2] == "sleep timer off" and out[-1] == "[idle] vol 40%"


def test_volume_as_mpc_reads_it(served: Served, capsys: Capture) -> None:
    levels = {"50": 0.5, "50%": 0.5, "0.25": 0.25, "1.0": 1.0, "7": 0.07, "100": 1.0, "0": 0.0}
    for text, volume in levels.items():
        assert ctl(served, "volume", text) == 0
        assert served.controller.volume == volume, text
    assert ctl(served, "volume", "40") == 0
    assert ctl(served, "volume", "+10") == 0
    assert served.controller.volume == pytest.approx(0.5)
    assert ctl(served, "volume", "-30") == 0
    assert served.controller.volume == pytest.approx(0.2)
    assert ctl(served, "volume", "-50") == 0  # a step stops at 0
    assert served.controller.volume == 0.0
    capsys.readouterr()
    before = len(served.controller.calls)
    for text in ("150", "1.5e3", "loud", "nan"):
        assert ctl(served, "volume", text) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "0-100 (%), 0.0-1.0, or a step like +10 or -10" in err, err
        assert "Input should" not in err
    assert len(served.controller.calls) == before  # nothing was sent


def test_errors_are_one_line_with_exit_status_2(served: Served, capsys: Capture) -> None:
    assert ctl(served, "pause") == 2  # no session: the daemon refuses
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no session is running" in err
    for args, words in (
        (
            ("start", "sad", "calm", "--minutes", "500"),
            "minutes 500 is out of range: give more than 0 and at most 240",
        ),
        (("extend", "1000"), "extend by 1000 is out of range: give -240 to 240"),
        (("sleep", "soon"), "sleep minutes 'soon' is not a number"),
        (("history", "--limit", "0"), "--limit 0 is out of range: give 1 to 500"),
        (("checkin", "before", "clam"), "clam"),
        (("start", "sad"), "start needs FROM and TO"),
    ):
        assert ctl(served, *args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, (args, err)
    assert served.controller.names() == "pause"  # none of them was sent
    assert main(["ctl", "--url", "ws://127.0.0.1:9/ws", "--timeout", "2", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmed-stream: error: cannot reach the daemon") and err.count("\n") == 1


def test_ctl_limits_are_the_protocols() -> None:
    from musicmed_stream.cli.ctl import LIMITS
    from musicmed_stream.control import protocol as p

    def bounds(model: Any, field: str) -> tuple[float, float, bool]:
        """(low, high, low excluded) of a field, from the JSON Schema the protocol publishes."""
        spec = model.model_json_schema(by_alias=True)["properties"][field]
        (number,) = [b for b in spec.get("anyOf", [spec]) if b.get("type") in ("number", "integer")]
        low = number.get("exclusiveMinimum", number.get("minimum"))
        return (low, number["maximum"], "exclusiveMinimum" in number)

    assert LIMITS["minutes"] == bounds(p.StartCommand, "minutes")
    assert LIMITS["clip_seconds"] == bounds(p.StartCommand, "clip_seconds")
    assert LIMITS["temperature"] == bounds(p.StartCommand, "temperature")
    assert LIMITS["seed"] == bounds(p.StartCommand, "seed")
    assert LIMITS["fade_seconds"] == bounds(p.StopCommand, "fade_seconds")
    assert LIMITS["extend"] == bounds(p.ExtendCommand, "minutes")
    assert LIMITS["sleep"] == bounds(p.SleepTimerCommand, "minutes")
    assert LIMITS["limit"] == bounds(p.HistoryCommand, "limit")


def test_start_during_a_session_is_refused_with_a_hint_unless_replace(
    served: Served, capsys: Capture
) -> None:
    assert ctl(served, "start", "sad", "calm") == 0
    assert ctl(served, "start", "tense", "happy") == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2 and "a session plays" in lines[0], err  # the daemon's own words ...
    assert (
        lines[1] == "hint: add --replace to end it and start this one, or lead it there: ctl set-target happy"
    )
    assert ctl(served, "start", "tense", "happy", "--replace") == 0
    assert capsys.readouterr().out == "started s2: tense→happy, 5 parts, 2:20\n"
    assert served.controller.calls[-1][1].replace is True


def test_presets_and_start_from_a_preset(served: Served, capsys: Capture) -> None:
    served.controller.presets = [
        {"name": "Calm down, 15 min", "to": "calm", "minutes": 15.0},
        {"name": "Fall asleep, 30 min", "from": "tense", "to": "sad", "minutes": 30.0, "path": "arc"},
    ]
    assert ctl(served, "presets") == 0
    assert (
        capsys.readouterr().out
        == "Calm down, 15 min: → calm, 15 min\nFall asleep, 30 min: tense → sad, 30 min\n"
    )
    assert ctl(served, "start", "--preset", "fall") == 0  # a unique beginning, any case
    options = served.controller.calls[-1][1]
    assert (options.start, options.target, options.minutes, options.path) == ("tense", "sad", 30.0, "arc")
    # A preset that does not say where from: FROM is where the listener is.
    assert ctl(served, "start", "happy", "--preset", "Calm down, 15 min", "--replace", "--minutes", "5") == 0
    options = served.controller.calls[-1][1]
    assert (options.start, options.target, options.minutes, options.replace) == ("happy", "calm", 5.0, True)
    capsys.readouterr()
    # Without FROM the start goes without `from`: the daemon starts where the listener said they are
    assert ctl(served, "start", "--preset", "calm", "--replace") == 0
    assert served.controller.calls[-1][1].start is None
    assert ctl(served, "start", "--preset", "party") == 2
    assert (
        "no preset 'party'; the daemon offers: 'Calm down, 15 min', 'Fall asleep, 30 min'"
        in capsys.readouterr().err
    )


def test_checkin_and_history(served: Served, capsys: Capture) -> None:
    from musicmed_stream.emotion import VA, nearest_emotion, resolve_state

    calm, _ = resolve_state("calm")
    felt_before = nearest_emotion(VA(-0.3, 0.8)).name
    assert ctl(served, "checkin", "before", "-0.3,0.8") == 0  # a negative coordinate needs no --
    assert capsys.readouterr().out == "noted before: -0.30,+0.80 (-0.30, +0.80), not tied to a session yet\n"
    assert ctl(served, "start", "tense", "calm") == 0
    assert ctl(served, "stop") == 0
    assert ctl(served, "checkin", "after", "calm") == 0  # a name, resolved here to its point
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"noted after: calm ({calm.valence:+.2f}, {calm.arousal:+.2f}), with session s1"
    )
    assert served.controller.checkins == [("before", -0.3, 0.8), ("after", calm.valence, calm.arousal)]
    assert ctl(served, "start", "sad", "happy") == 0
    capsys.readouterr()
    assert ctl(served, "history") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["date", "id", "from→to", "played", "ended", "felt", "before→after"]
    newest, oldest = table[1].split(), table[2].split()
    assert newest[2:] == ["s2", "sad→happy", newest[4], "playing", "-"], newest
    assert newest[4].endswith("/2:20") and newest[4].startswith("0:0")
    assert oldest[2:5] == ["s1", "tense→calm", oldest[4]] and oldest[5] == "stopped"
    assert oldest[6] == f"{felt_before}→calm", table  # in the vocabulary's words
    assert ctl(served, "history", "--limit", "1", "--json") == 0
    (entry,) = json.loads(capsys.readouterr().out)["sessions"]
    assert entry["id"] == "s2" and entry["planned_s"] == 140.0
    assert served.controller.calls[-1] == ("history", 1)


def test_url_forms_environment_and_the_daemons_config(
    served_with_token: Served, capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MUSICMED_CONTROL_TOKEN", raising=False)
    port = served_with_token.server.port
    for url in (
        f"ws://127.0.0.1:{port}/",
        f"http://127.0.0.1:{port}/",
        f"127.0.0.1:{port}",
        f"ws://127.0.0.1:{port}",
    ):
        assert main(["ctl", "--url", url, "--token", "letmein"]) == 0, url
        assert capsys.readouterr().out == "[idle] vol 100%\n"
    # A page that is not the websocket: one line, the status and where to go, never the HTML.
    assert main(["ctl", "--url", f"http://127.0.0.1:{port}/index.html", "--token", "letmein"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "<" not in err, err
    assert f"HTTP 200 OK); it listens at ws://127.0.0.1:{port}/ws" in err
    # A token in the URL is not printed back (a terminal's scrollback, a CI log).
    assert main(["ctl", "--url", f"http://127.0.0.1:{port}/index.html?token=letmein"]) == 2
    err = capsys.readouterr().err
    assert "letmein" not in err and "token=***" in err, err
    # The URL from the environment, then from the daemon's own config (its port and its token).
    monkeypatch.setenv("MUSICMED_CTL_URL", f"http://127.0.0.1:{port}")
    assert main(["ctl", "--token", "letmein"]) == 0
    monkeypatch.delenv("MUSICMED_CTL_URL")
    monkeypatch.setenv("MUSICMED_URL", f"127.0.0.1:{port}")  # the name mpc users expect (MPD_HOST)
    assert main(["ctl", "--token", "letmein"]) == 0
    monkeypatch.delenv("MUSICMED_URL")
    # --host / --port, each defaulting to the daemon's defaults.
    assert main(["ctl", "--host", "127.0.0.1", "--port", str(port), "--token", "letmein"]) == 0
    assert main(["ctl", "--port", str(port), "--token", "letmein"]) == 0
    assert capsys.readouterr().out == "[idle] vol 100%\n" * 4
    config = tmp_path / "config.toml"
    config.write_text(f'[control]\nhost = "0.0.0.0"\nport = {port}\ntoken = "letmein"\n')
    assert main(["ctl", "--config", str(config), "status"]) == 0
    monkeypatch.setenv("MUSICMED_CONFIG", str(config))
    monkeypatch.setenv("MUSICMED_CTL_URL", "")  # set but empty: no URL, and no configuration key
    assert main(["ctl"]) == 0
    # The daemon's own environment overrides of [control] count, as for the daemon.
    config.write_text('[control]\nport = 9\ntoken = "letmein"\n')
    monkeypatch.setenv("MUSICMED_CONTROL_PORT", str(port))
    assert main(["ctl"]) == 0
    monkeypatch.delenv("MUSICMED_CONTROL_PORT")
    assert capsys.readouterr().out == "[idle] vol 100%\n" * 3
    config.write_text("[control]\nport = 0\n")
    assert main(["ctl"]) == 2
    assert "control.port = 0" in capsys.readouterr().err


def test_token_from_flag_environment_or_config(
    served_with_token: Served, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MUSICMED_CONTROL_TOKEN", raising=False)
    monkeypatch.delenv("MUSICMED_CONFIG", raising=False)
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


def test_follow_only_some_event_types(served: Served, capsys: Capture) -> None:
    controller = served.controller

    async def later() -> None:
        while not controller.queues:
            await asyncio.sleep(0.01)
        await controller.start_session(StartOptions(start="tense", target="calm"))
        await controller.set_target("happy")
        await controller.stop()

    asyncio.run_coroutine_threadsafe(later(), served.loop)
    assert ctl(served, "follow", "--only", "plan_changed, session_ended") == 0
    events = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert events == ["plan_changed", "session_ended"]
    with pytest.raises(SystemExit):
        ctl(served, "follow", "--only", " , ")
    assert "event types" in capsys.readouterr().err


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


def test_a_ctl_call_imports_no_numerics(served: Served) -> None:
    # What makes ctl start fast: no pydantic models, no numpy/scipy, never torch or matplotlib.
    code = (
        "import json, sys\n"
        "from musicmed_stream.cli.main import main\n"
        f"assert main(['ctl', '--url', {served.server.url!r}, 'status']) == 0\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, modules = proc.stdout.splitlines()
    assert first == "[idle] vol 100%"
    top = {name.split(".")[0] for name in json.loads(modules)}
    assert not top & {"torch", "noisereduce", "matplotlib", "numpy", "scipy", "pydantic", "librosa"}, top
    assert "musicmed_stream.control.protocol" not in json.loads(modules)


def test_status_line_of_the_real_daemon(tmp_path: Path, jamendo_dir: Path) -> None:
    async def ctl_out(url: str, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "musicmed_stream.cli.main",
            "ctl",
            "--url",
            url,
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def scenario() -> tuple[str, dict[str, Any]]:
        async with running_daemon(
            tmp_path, jamendo_dir, speed=1.0, **{"playback.max_volume": 0.7}
        ) as running:
            url = running.server.url
            await ctl_out(url, "start", "sad", "calm", "--minutes", "1", "--clip-seconds", "6", "--seed", "3")
            await ctl_out(url, "sleep", "20")
            while (status := json.loads(await ctl_out(url, "status", "--json")))["segment_index"] in (
                None,
                0,
            ):
                await asyncio.sleep(0.2)
            await ctl_out(url, "pause")  # the times stand still while paused
            line = await ctl_out(url, "status")
            status = json.loads(await ctl_out(url, "status", "--json"))
            await ctl_out(url, "stop", "--fade", "0.1")
            return line, status

    line, status = asyncio.run(scenario())
    segments = status["plan"]["segments"]
    grid = segments[-1]["start_s"] + segments[-1]["duration_s"]
    assert status["total_s"] == pytest.approx(grid) and grid < sum(s["duration_s"] for s in segments)
    played, total = status["played_s"], status["total_s"]
    expected = (
        f"[paused] {status['segment_index'] + 1}/{len(segments)} {status['emotion']}→calm "
        f"{clock(played)}/{clock(total)} ({round(100 * played / total)}%) "
        f"sleep {clock(status['sleep_timer_s'])} vol 70% (limit 70%)\n"
    )
    assert line == expected
