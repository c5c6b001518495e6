"""The real daemon, in-process, for end-to-end tests: built-in engine, file sink, control server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.app import build_daemon
from musicmed_stream.control.server import ControlServer, start_control_server
from musicmed_stream.control.settings import ControlSettings
from musicmed_stream.service.config import PlaybackSettings, load_config
from musicmed_stream.service.daemon import Daemon


@dataclass
class Running:
    daemon: Daemon
    server: ControlServer
    recording: Path


def daemon_overrides(folder: Path, jamendo: Path, speed: float) -> dict[str, Any]:
    """Settings for a fast, quiet, reproducible test daemon writing its audio to ``folder``."""
    return {
        "engine.name": "builtin",
        "sink.type": "file",
        "sink.file": str(folder / "recording.wav"),
        "sink.speed": speed,
        "service.state_dir": str(folder / "state"),
        "service.resume": False,
        "service.warmup": False,
        "session.jamendo": str(jamendo),
        "playback.buffer_seconds": 8.0,
        # A sped-up sink drains the ring faster than real time: keep at least half a second of wall
        # time, so that a busy test machine does not underrun (commands do not wait for the ring).
        "playback.ring_seconds": min(max(PlaybackSettings().ring_seconds, 0.5 * speed), 5.0),
        # and a command leaves the same wall time (0.1 s) of audio in the ring as at real time
        "playback.respond_seconds": PlaybackSettings().respond_seconds * speed,
    }


@contextlib.asynccontextmanager
async def running_daemon(
    folder: Path,
    jamendo: Path,
    *,
    speed: float = 4.0,
    control: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """Start the daemon and its control server on a free port; close both (the recording is complete
    once this exits)."""
    config = load_config(env={}, overrides=daemon_overrides(folder, jamendo, speed) | overrides)
    daemon = build_daemon(config)
    await daemon.start()
    try:
        server = await start_control_server(daemon, ControlSettings(port=0, **(control or {})))
        try:
            yield Running(daemon, server, folder / "recording.wav")
        finally:
            await server.close()
    finally:
        await daemon.close(fade_seconds=0.1)


def silent_runs(
    audio: np.ndarray, sample_rate: int, frame_s: float = 0.005, floor_db: float = -120.0
) -> list[float]:
    """Lengths in seconds of the digitally silent stretches between the first and the last sound.

    A playback gap (an empty ring, a clip that came too late) is digital silence; the default floor
    sits far below the music's own quiet moments (a note decaying into a rest reaches -100 dBFS).
    """
    mono = np.abs(audio).max(axis=1) if audio.ndim == 2 else np.abs(audio)
    frame = max(1, int(frame_s * sample_rate))
    n = mono.size // frame
    loud = mono[: n * frame].reshape(n, frame).max(axis=1) > 10 ** (floor_db / 20)
    idx = np.flatnonzero(loud)
    if idx.size == 0:
        return [n * frame_s]
    inner = loud[idx[0] : idx[-1] + 1]
    edges = np.flatnonzero(np.diff(np.r_[1, inner.astype(np.int8), 1]))  # silent runs: start/stop pairs
    return [(stop - start) * frame_s for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def sounding_span(audio: np.ndarray, sample_rate: int, floor_db: float = -70.0) -> tuple[float, float]:
    """Seconds of the first and last sample above ``floor_db`` dBFS."""
    mono = np.abs(audio).max(axis=1) if audio.ndim == 2 else np.abs(audio)
    idx = np.flatnonzero(mono > 10 ** (floor_db / 20))
    return (idx[0] / sample_rate, idx[-1] / sample_rate) if idx.size else (0.0, 0.0)
