"""``musicmed-stream serve`` as a process: crash (kill -9) and resume, SIGHUP reload, SIGTERM exit."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicmed_stream.cli.main import main


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def state_index(state: Path) -> dict | None:
    try:
        return json.loads((state / "session.json").read_text())
    except (OSError, ValueError):
        return None


def serve(tmp_path: Path, config: Path, log: Path, *extra: str, **env_extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSICMED_", "NOTIFY_", "WATCHDOG_"))}
    env.update(env_extra)
    return subprocess.Popen(
        [sys.executable, "-m", "musicmed_stream", "serve", "--config", str(config), *extra],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=env,
        cwd=tmp_path,
    )


CONFIG = """
[engine]
name = "builtin"
[sink]
type = "null"
speed = 4.0
block_size = {block}
[session]
clip_seconds = 4.0
minutes = 1.0
seed = 5
[playback]
buffer_seconds = 6.0
volume = {volume}
[control]
port = 0
[service]
state_dir = "{state}"
warmup = false
"""


def test_a_killed_daemon_resumes_the_session_at_the_segment_it_was_playing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(block=1024, volume=0.8, state=state))
    first_log = tmp_path / "first.log"
    proc = serve(tmp_path, config, first_log, "--start-from", "sad", "--start-to", "calm")
    try:
        record = wait_for(lambda: (r := state_index(state)) and r["index"] >= 2 and r, 60, "segment 2")
    finally:
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    record = state_index(state)
    assert record is not None
    index, session_id = record["index"], record["session_id"]

    second_log = tmp_path / "second.log"
    notify_path = tmp_path / "notify.sock"
    notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_socket.bind(str(notify_path))
    notify_socket.settimeout(30)
    proc = serve(tmp_path, config, second_log, NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="400000")
    try:
        # systemd's protocol: READY=1 once serving, then WATCHDOG=1 every half watchdog period
        messages = [notify_socket.recv(256).decode() for _ in range(3)]
        assert messages[0] == "READY=1"
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        resumed = f"resuming session {session_id} at segment {index}"
        wait_for(lambda: resumed in second_log.read_text(), 60, "the resume message")
        wait_for(lambda: f"segment {index} started" in second_log.read_text(), 60, "the resumed segment")
        text = second_log.read_text()
        assert "segment 0 started" not in text, "the session did not restart from the beginning"
        started = [int(i) for i in re.findall(r"segment (\d+) started", text)]
        assert started[0] == index
        after = state_index(state)
        assert after is not None and after["session_id"] == session_id and after["index"] >= index

        # SIGHUP: live settings apply, the others are named as needing a restart
        config.write_text(CONFIG.format(block=512, volume=0.5, state=state))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in second_log.read_text(), 30, "the reload")
        text = second_log.read_text()
        assert "playback.volume" in text
        assert re.search(r"take effect after a restart: sink\.block_size", text)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        notify_socket.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "stopped" in second_log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "bad.toml"], "control.token is required"),
        (["--config", "missing.toml"], "config file missing.toml not found"),
        (
            ["--sink", "null", "--speed", "0"],
            "sink.speed = 0.0: Input should be greater than or equal to 0.01",
        ),
        (["--sink", "file", "--sink-file", "out.mp3"], "must end in .wav or .flac"),
    ],
)
def test_serve_refuses_bad_settings_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "bad.toml").write_text("[control]\nhost = '0.0.0.0'\n")
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("MUSICMED_")]:
        monkeypatch.delenv(name)
    assert main(["serve", "--state-dir", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmed-stream: error:") and message in err
    assert err.count("\n") == 1
