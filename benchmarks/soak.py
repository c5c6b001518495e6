"""Soak: the daemon as a process, for 20 wall minutes, under hostile control traffic and engine faults.

Usage::

    nice -n 5 python benchmarks/soak.py                      # 20 wall minutes, null sink at 10x
    nice -n 5 python benchmarks/soak.py --minutes 3 --speed 20 --fault-rate 0.2 --seed 7
    python benchmarks/soak.py --child CONFIG --fault-rate 0.1  # the daemon (the soak starts it)

The daemon runs in a child process, so that its RSS, its open files and its SIGTERM time are its
own: ``serve()`` of :mod:`musicmed_stream.service.runner`, from a temporary ``config.toml`` (the
built-in engine, a ``null`` sink paced ``--speed`` times faster than real time, a token, a
temporary state folder, sessions of ``--session-minutes``). In the child the engine is wrapped so
that ``--fault-rate`` of its ``generate`` and ``stream`` calls raise (half of the failing streams
after a few pieces); the wrapper is called ``builtin+faults``, so the producer's retries and its
fallback to the built-in engine are what covers for it. The wrapping lives here, not in the product.

The soak drives the daemon for ``--minutes`` with:

- one fuzzing client, one message at a time, each reply timed: valid commands mixed with hostile
  ones (deep nesting, -1e999, NaN, 5000-digit integers, lone surrogates ``"\\udcff"``, wrong types,
  unknown types, near-limit sizes); now and then a throwaway connection sends something that should
  close it (an oversized message: 1009, a wrong token: 1008, a flood: 1008) or a binary frame;
- a re-target (``set_target`` to an emotion name) every 2-5 s, except in the last segments of a
  session so that sessions end; volume, pause/resume, skip, extend now and then; a new session
  (``start`` with ``replace``) whenever one ends, and every few minutes in the middle of one;
- ``--subscribers`` clients subscribed to every event (100), 5 of which never read their socket
  (replaced by 5 new ones every minute).

Every wall minute it prints the daemon's RSS (``VmRSS``) and open fds (``/proc/PID/fd``), and the
counts so far: underrun events (and the audio seconds they lost), bridges, error events, internal
errors, segments started, sessions ended, requests, hangs, the slowest reply of the minute, and the
CPU the daemon and the soak used with the machine's load (a sped-up sink needs ``--speed`` times
the playback path's CPU: on a busy 2-core machine underruns and bridges follow the load). At the
end: each session's segments played against planned (from the daemon's event log) and the figures,
with their targets:

- underruns: 0 (``underrun`` events);
- internal errors: 0 (``internal`` error replies, close code 1011 seen by any client);
- hangs: 0 (a request not answered within 1 s);
- segments keep advancing to the end of every session: no wait between two segments (or to the
  end) longer than ``max(30 s, 10 clips of wall time)``, no producer watchdog restart. Waits past
  3 clips of wall time are counted apart: the engine behind the sped-up play head, as its pace
  (seconds per clip, from the child's ``engine-trace.log``) shows; a session waiting past two clip
  steps (at least 6 s) gets the daemon's thread stacks saved (``py-spy dump``, where installed) in
  ``stall-N.txt``;
- all segments played: every session played segments 0, 1, ... in order with none missing, up to
  ``N - 1`` of its final plan when it finished (a segment that starts twice is listed, not failed:
  a clip cut short by a mid-clip fault plays again, and an old path's next clip can be heard for a
  moment before a re-target's cut-in lands);
- SIGTERM to exit <= 2 s (with all subscribers connected), RSS growth after the first minute
  < 10 % (the median RSS of the last minute against that of the second; RSS is sampled every 5 s),
  peak RSS (``VmHWM``) <= 300 MB.

The ring (``playback.ring_seconds``) is scaled by the speed (up to 5 s) so that it covers the same
wall-clock time as at real time, as in ``daemon_latency.py``, and so is ``respond_seconds`` (what a
command leaves queued): a sped-up sink must not turn a scheduling hiccup of a busy machine into an
underrun that real time would not have.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run the working tree's package, as `python benchmarks/soak.py`
    sys.path.insert(0, str(ROOT))

HANG_S = 1.0  # a request not answered within this is a hang
NON_READERS = 5
RETARGET_MARGIN = 7  # no re-target within this many segments of a session's end (so that it ends)
RSS_GROWTH_MAX = 0.10
PEAK_RSS_MAX_MB = 300.0
SIGTERM_MAX_S = 2.0
EMOTIONS = ("calm", "happy", "sad", "tense", "relaxed", "sleepy", "excited", "content", "serene", "gloomy")


# ====================================================================== the child: the daemon


class InjectedFault(RuntimeError):
    """The soak's engine fault (any exception type may come out of a real engine)."""


class FaultyEngine:
    """An engine whose ``generate`` and ``stream`` calls fail at ``rate`` (thread-safe counts).

    A failing stream raises at once or, half of the time, after one to three pieces (a decoder
    that dies in the middle of a clip). Everything else is the wrapped engine's.
    """

    def __init__(self, inner: Any, rate: float, seed: int, trace: Path | None = None) -> None:
        self._inner = inner
        self._trace = None if trace is None else open(trace, "a", buffering=1)  # noqa: SIM115
        self._rate = rate
        self._rng = random.Random(f"faults {seed}")
        self._lock = threading.Lock()
        self.name = f"{inner.name}+faults"
        self.sample_rate = inner.sample_rate
        self.channels = inner.channels
        self.calls = Counter[str]()
        self.faults = Counter[str]()

    def __getattr__(self, name: str) -> Any:  # synthesized, stream_chunk_seconds, adapter_info, ...
        return getattr(self._inner, name)

    def trace(self, text: str) -> None:
        """A line of the engine's own timeline (monotonic seconds), to read a stall against."""
        if self._trace is not None:
            self._trace.write(f"{time.monotonic():.3f} {text}\n")

    def _draw(self, what: str) -> tuple[bool, int]:
        with self._lock:
            self.calls[what] += 1
            fault = self._rng.random() < self._rate
            after = self._rng.choice((0, 0, 0, 1, 2, 3)) if fault else 0
            if fault:
                self.faults[f"{what} (mid-clip)" if after and what == "stream" else what] += 1
        return fault, after

    def generate(self, segment: Any, previous: Any, *, seed: int, cancel: Any = None) -> Any:
        fault, _ = self._draw("generate")
        self.trace(f"generate {segment.index} {'fault' if fault else 'start'}")
        if fault:
            raise InjectedFault(f"injected fault: generate, segment {segment.index}")
        try:
            clip = self._inner.generate(segment, previous, seed=seed, cancel=cancel)
        except BaseException as exc:
            self.trace(f"generate {segment.index} raised {type(exc).__name__}")
            raise
        self.trace(f"generate {segment.index} done {clip.duration_s:.2f}")
        return clip

    def stream(self, segment: Any, previous: Any, *, seed: int, cancel: Any = None) -> Iterator[Any]:
        fault, after = self._draw("stream")
        self.trace(f"stream {segment.index} {f'fault after {after}' if fault else 'start'}")
        if fault and after == 0:
            raise InjectedFault(f"injected fault: stream, segment {segment.index}")
        for n, item in enumerate(self._inner.stream(segment, previous, seed=seed, cancel=cancel)):
            if fault and n == after:
                raise InjectedFault(f"injected fault: stream, segment {segment.index}, after {n} pieces")
            if hasattr(item, "duration_s"):  # the finished clip
                self.trace(f"stream {segment.index} done {item.duration_s:.2f}")
            else:
                self.trace(f"stream {segment.index} piece {n}")
            yield item


def child_main(config_path: str, fault_rate: float, seed: int, stats_path: str | None) -> int:
    """The daemon as ``musicmed-stream serve --config CONFIG`` runs it, with a faulty engine."""
    from musicmed_stream import app
    from musicmed_stream.service import runner
    from musicmed_stream.service.config import load_config

    config = load_config(config_path)
    runner.configure_logging(config.service.log_level)
    real_build_engine = app.build_engine
    engines: list[FaultyEngine] = []

    def build_engine(config: Any) -> Any:  # build_daemon() looks it up in app's namespace
        trace = Path(config_path).with_name("engine-trace.log")
        engine = FaultyEngine(real_build_engine(config), fault_rate, seed, trace)
        engines.append(engine)
        return engine

    app.build_engine = build_engine
    try:
        return asyncio.run(runner.serve(config, config_path=config_path))
    finally:
        if stats_path and engines:
            stats = {"calls": dict(engines[0].calls), "faults": dict(engines[0].faults)}
            Path(stats_path).write_text(json.dumps(stats))


# ====================================================================== the driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, args: argparse.Namespace, port: int, token: str) -> Path:
    ring = min(2.0 * args.speed, 5.0)
    respond = min(0.1 * args.speed, ring / 2)
    text = f"""
[engine]
name = "builtin"

[sink]
type = "null"
speed = {float(args.speed)!r}

[session]
minutes = {float(args.session_minutes)!r}
clip_seconds = {float(args.clip_seconds)!r}

[playback]
ring_seconds = {ring!r}
respond_seconds = {respond!r}

[control]
host = "127.0.0.1"
port = {port}
token = "{token}"

[service]
log_level = "info"
state_dir = "{folder / "state"}"
"""
    path = folder / "config.toml"
    path.write_text(text)
    return path


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (MB), open fds and CPU seconds of a process."""
    out: dict[str, float] = {}
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024.0
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        pass
    return out


@dataclass
class SessionLive:
    session_id: str
    planned: int
    last_index: int = -1
    ended: bool = False
    last_at: float = field(default_factory=time.monotonic)  # its latest segment (or its start)


@dataclass
class Soak:
    """What the clients saw, shared by the driver's tasks."""

    args: argparse.Namespace
    url: str
    token: str
    rng: random.Random
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    shutting_down: bool = False
    # the tracker (reader 0)
    sessions: dict[str, SessionLive] = field(default_factory=dict)
    current: str | None = None
    events: Counter[str] = field(default_factory=Counter)
    underrun_frames: int = 0
    watchdog_restarts: int = 0
    # every client
    internal: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    closes: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    minute_latency: float = 0.0
    max_latency: tuple[float, str] = (0.0, "")
    replies: Counter[str] = field(default_factory=Counter)
    accepted_hostile: Counter[str] = field(default_factory=Counter)
    refused_valid: Counter[str] = field(default_factory=Counter)
    throwaway: Counter[str] = field(default_factory=Counter)
    reader_events: list[int] = field(default_factory=list)
    reader_reconnects: int = 0
    last_start: str | None = None
    last_start_at: float = 0.0

    def timed(self, what: str, latency: float) -> None:
        self.requests += 1
        self.minute_latency = max(self.minute_latency, latency)
        if latency > self.max_latency[0]:
            self.max_latency = (latency, what)
        if latency > HANG_S:
            self.hangs.append(f"{what}: {latency:.2f} s")

    def closed(self, who: str, exc: BaseException) -> None:
        code = getattr(getattr(exc, "rcvd", None), "code", None)
        reason = getattr(getattr(exc, "rcvd", None), "reason", "")
        self.closes[f"{who} {code}"] += 1
        if code == 1011:
            self.internal.append(f"{who}: close 1011 {reason}")

    def reply(self, who: str, what: str, data: dict[str, Any]) -> None:
        if data.get("type") == "error" and data.get("code") == "internal":
            self.internal.append(f"{who} {what}: {data.get('message')}")


def _connect(soak: Soak, *, token: bool = True, **options: Any) -> Any:
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {soak.token}"} if token else {}
    options.setdefault("max_size", 2**24)
    options.setdefault("open_timeout", 20)
    return connect(soak.url, additional_headers=headers, **options)


async def _request(soak: Soak, ws: Any, raw: str | bytes, what: str, who: str) -> dict[str, Any] | None:
    """Send one message and wait for its reply (events in between are skipped); ``None`` if the
    daemon answered nothing for 30 s (counted as a hang)."""
    started = time.monotonic()
    await ws.send(raw)
    while True:
        left = started + 30.0 - time.monotonic()
        try:
            message = await asyncio.wait_for(ws.recv(), max(left, 0.01))
        except TimeoutError:
            soak.timed(f"{who} {what} (no reply)", time.monotonic() - started)
            return None
        data = json.loads(message)
        if data.get("type") != "event":
            soak.timed(f"{who} {what}", time.monotonic() - started)
            soak.reply(who, what, data)
            return data


# ---------------------------------------------------------------------- subscribers


async def reader(soak: Soak, n: int) -> None:
    """A subscriber that reads everything; reader 0 also tracks the sessions for the fuzzer."""
    from websockets.exceptions import ConnectionClosed

    while not soak.stop.is_set():
        try:
            async with _connect(soak) as ws:
                json.loads(await ws.recv())  # hello
                await _request(soak, ws, json.dumps({"type": "subscribe", "id": 1}), "subscribe", "reader")
                async for message in ws:
                    soak.reader_events[n] += 1
                    if n == 0:
                        track(soak, json.loads(message))
        except ConnectionClosed as exc:
            soak.closed("reader" if not soak.shutting_down else "reader at SIGTERM", exc)
        except OSError:
            pass
        if soak.shutting_down:
            return
        soak.reader_reconnects += 1
        await asyncio.sleep(1.0)


def track(soak: Soak, data: dict[str, Any]) -> None:
    """Follow the sessions from reader 0's events (the fuzzer's view; the final figures come from
    the daemon's event log)."""
    if data.get("type") != "event":
        return
    kind, payload = data["event"], data["data"]
    soak.events[kind] += 1
    if kind == "session_started":
        soak.current = payload["session_id"]
        soak.sessions[soak.current] = SessionLive(soak.current, len(payload["plan"]["segments"]))
    elif soak.current is None or soak.current not in soak.sessions:
        return
    live = soak.sessions[soak.current]
    if kind == "plan_changed":
        live.planned = len(payload["plan"]["segments"])
    elif kind == "segment_started":
        live.last_index = payload["index"]
        live.last_at = time.monotonic()
    elif kind == "underrun":
        soak.underrun_frames += payload["frames"]
    elif kind == "error" and "watchdog" in payload.get("where", ""):
        soak.watchdog_restarts += 1
    elif kind == "session_ended":
        live.ended = True


async def non_readers(soak: Soak) -> None:
    """Subscribers that never read their socket after the ``subscribe`` reply; five new ones every
    minute (the old ones are dropped without a close handshake)."""
    held: list[Any] = []
    while not soak.stop.is_set():
        for ws in held:
            ws.transport.abort()
        held = []
        for _ in range(NON_READERS):
            try:
                ws = await _connect(soak, ping_interval=None, max_queue=1)
                json.loads(await ws.recv())
                await _request(
                    soak, ws, json.dumps({"type": "subscribe", "id": 1}), "subscribe", "non-reader"
                )
                held.append(ws)
            except Exception as exc:
                soak.closes[f"non-reader could not connect ({type(exc).__name__})"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), 60.0)
    # left open for SIGTERM: the daemon must not wait for them


# ---------------------------------------------------------------------- the fuzzer


def hostile_messages(rng: random.Random) -> list[tuple[str, str]]:
    """Messages no valid client sends; each must get an ``error`` reply (never ``internal``)."""
    n = rng.choice((17, 100, 1000, 20000))
    return [
        ("deep array", "[" * n + "]" * n),
        ("deep object", '{"a":' * min(n, 10000) + "1" + "}" * min(n, 10000)),
        ("deep in a command", '{"type":"set_target","target":' + "[" * 40 + "]" * 40 + "}"),
        ("brackets in text", json.dumps({"type": "set_target", "target": "[" * 3000})),
        ("-1e999 volume", '{"type":"volume","volume":-1e999,"id":"v"}'),
        ("1e999 minutes", '{"type":"start","to":"calm","minutes":1e999,"replace":true}'),
        ("-1e999 extend", '{"type":"extend","minutes":-1e999}'),
        ("1e999 fade", '{"type":"stop","fade_seconds":1e999}'),
        ("NaN point", '{"type":"set_target","target":{"valence":NaN,"arousal":0}}'),
        ("Infinity check-in", '{"type":"checkin","when":"after","valence":Infinity,"arousal":-Infinity}'),
        ("5000-digit limit", '{"type":"history","limit":' + "9" * 5000 + "}"),
        ("400-digit id", '{"type":"status","id":' + "1" * 400 + "}"),
        ("2**64 seed", '{"type":"start","to":"calm","seed":18446744073709551616}'),
        ("nan text point", '{"type":"set_target","target":"nan,nan"}'),
        ("1e999 text point", '{"type":"set_target","target":"1e999,-1e999"}'),
        ("outside text point", '{"type":"set_target","target":"5,5"}'),
        ("outside point", '{"type":"set_target","target":{"valence":1.5,"arousal":-1}}'),
        ("lone surrogate target", '{"type":"set_target","target":"\\udcff"}'),
        ("lone surrogate key", '{"\\udcff":1,"type":"status"}'),
        ("lone surrogate id", '{"type":"status","id":"\\ud800"}'),
        ("lone surrogate token", '{"type":"auth","token":"\\udcff"}'),
        ("lone surrogate in list", '{"type":"unsubscribe","events":["\\udcff"]}'),
        ("surrogate pair", '{"type":"set_target","target":"\\ud83d\\ude00"}'),
        ("text volume", '{"type":"volume","volume":"0.5"}'),
        ("bool volume", '{"type":"volume","volume":true}'),
        ("int target", '{"type":"set_target","target":42}'),
        ("list target", '{"type":"start","to":["calm"]}'),
        ("text events", '{"type":"unsubscribe","events":"all"}'),
        ("float limit", '{"type":"history","limit":2.5}'),
        ("type int", '{"type":5}'),
        ("type null", '{"type":null}'),
        ("type list", '{"type":["status"]}'),
        ("type object", '{"type":{"type":"status"}}'),
        ("no type", '{"id":3}'),
        ("array", "[]"),
        ("string", '"status"'),
        ("null", "null"),
        ("number", "42"),
        ("NaN", "NaN"),
        ("unclosed", '{"type":"status"'),
        ("empty", ""),
        ("nul byte", "\x00"),
        ("unknown type", '{"type":"rm -rf /"}'),
        ("dunder type", '{"type":"__class__"}'),
        ("server type", '{"type":"ok"}'),
        ("event type", '{"type":"event","event":"underrun","data":{"frames":1}}'),
        ("upper-case type", '{"type":"STATUS"}'),
        ("padded type", '{"type":"status "}'),
        ("extra field", '{"type":"status","extra":1}'),
        ("duplicate keys", '{"type":"stop","type":"status","extra":{}}'),
        ("near-limit text", json.dumps({"type": "hello", "client": "x" * 60000})),
        ("3000 keys", json.dumps({f"k{i}": i for i in range(3000)} | {"type": "status"})),
        ("float id", '{"type":"status","id":1.5,"extra":0}'),
        ("2**53+1 id", '{"type":"status","id":9007199254740993,"extra":0}'),
        ("long id", json.dumps({"type": "status", "id": "x" * 300, "extra": 0})),
        ("bad when", '{"type":"checkin","when":"during","valence":0,"arousal":0}'),
        ("negative sleep timer", '{"type":"sleep_timer","minutes":-5}'),
        ("zero limit", '{"type":"history","limit":0}'),
        ("blank target", '{"type":"set_target","target":"   "}'),
        ("long target", json.dumps({"type": "set_target", "target": "calm" * 100})),
        ("control characters", json.dumps({"type": "set_target", "target": "calm\u0000\n"})),
        ("negative fade", '{"type":"stop","fade_seconds":-1}'),
        ("huge extend", '{"type":"extend","minutes":1e300}'),
        ("clip too short", '{"type":"start","to":"calm","clip_seconds":0.001,"replace":true}'),
        ("bad path", '{"type":"start","to":"calm","path":"zigzag","replace":true}'),
    ]


def benign_messages(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Valid commands that do not change what plays."""
    return [
        ("status", {"type": "status"}),
        ("hello", {"type": "hello", "client": "soak"}),
        ("history", {"type": "history", "limit": rng.randint(1, 50)}),
        (
            "checkin",
            {"type": "checkin", "when": rng.choice(("before", "after")), "valence": 0.1, "arousal": -0.2},
        ),
        ("unsubscribe", {"type": "unsubscribe"}),
        ("sleep_timer off", {"type": "sleep_timer", "minutes": None}),
    ]


class Fuzzer:
    """The controlling client: one message at a time, every reply timed."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.rng = soak.rng
        self.ws: Any = None
        self.ids = 0
        self.hostile = [m for _ in range(4) for m in hostile_messages(self.rng)]  # deep: 4 depths

    async def connect(self) -> None:
        self.ws = await _connect(self.soak, token=False)
        json.loads(await self.ws.recv())
        await self.send("auth", {"type": "auth", "token": self.soak.token})

    async def send(
        self, what: str, message: dict[str, Any] | str, valid: bool = True
    ) -> dict[str, Any] | None:
        from websockets.exceptions import ConnectionClosed

        if isinstance(message, dict):
            self.ids += 1
            message = json.dumps({**message, "id": self.ids})
        try:
            data = await _request(self.soak, self.ws, message, what, "fuzzer")
        except ConnectionClosed as exc:
            self.soak.closed(f"fuzzer ({what})", exc)
            await self.connect()
            return None
        if data is None:
            return None
        key = "ok" if data["type"] == "ok" else data.get("code", "?")
        self.soak.replies[key] += 1
        if valid and data["type"] == "error" and key != "rejected":
            self.soak.refused_valid[f"{what}: {data.get('message', '')[:80]}"] += 1
        if not valid and data["type"] == "ok":
            self.soak.accepted_hostile[what] += 1
        return data

    def live(self) -> SessionLive | None:
        soak = self.soak
        return soak.sessions.get(soak.last_start) if soak.last_start else None

    async def start(self, why: str) -> None:
        rng = self.rng
        message = {
            "type": "start",
            "from": rng.choice(EMOTIONS),
            "to": rng.choice(EMOTIONS),
            "minutes": self.soak.args.session_minutes,
            "seed": rng.randint(0, 2**31 - 1),
            "replace": True,
        }
        data = await self.send(f"start ({why})", message)
        if data is not None and data["type"] == "ok":
            self.soak.last_start = data["result"]["session_id"]
            self.soak.last_start_at = time.monotonic()

    def needs_start(self) -> bool:
        soak = self.soak
        if soak.last_start is None:
            return True
        live = self.live()
        if live is None:  # its session_started not seen yet
            return time.monotonic() - soak.last_start_at > 10.0
        return live.ended

    async def run(self) -> None:
        rng, soak = self.rng, self.soak
        await self.connect()
        now = time.monotonic()
        retarget_at = now + rng.uniform(2, 5)
        misc_at = now + rng.uniform(4, 10)
        throwaway_at = now + rng.uniform(10, 30)
        replace_at = now + rng.uniform(120, 240)
        while not soak.stop.is_set():
            now = time.monotonic()
            if self.needs_start():
                await self.start("the last one ended")
            elif now >= replace_at:
                replace_at = now + rng.uniform(120, 240)
                await self.start("replacing a playing one")
            elif now >= retarget_at:
                retarget_at = now + rng.uniform(2, 5)
                live = self.live()
                if live is not None and live.planned - live.last_index > RETARGET_MARGIN:
                    await self.send("set_target", {"type": "set_target", "target": rng.choice(EMOTIONS)})
            elif now >= misc_at:
                misc_at = now + rng.uniform(4, 10)
                await self.misc()
            elif now >= throwaway_at:
                throwaway_at = now + rng.uniform(10, 30)
                await throwaway(soak, rng)
            elif rng.random() < 0.7:
                what, raw = rng.choice(self.hostile)
                await self.send(what, raw, valid=False)
            else:
                what, message = rng.choice(benign_messages(rng))
                await self.send(what, message)
            await asyncio.sleep(rng.uniform(0.1, 0.3))

    async def misc(self) -> None:
        rng = self.rng
        choice = rng.choice(("volume", "pause", "skip", "extend", "status"))
        if choice == "volume":
            await self.send("volume", {"type": "volume", "volume": round(rng.uniform(0.0, 1.0), 3)})
        elif choice == "pause":
            await self.send("pause", {"type": "pause"})
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await self.send("resume", {"type": "resume"})
        elif choice == "skip":
            await self.send("skip", {"type": "skip"})
        elif choice == "extend":
            live = self.live()
            if live is not None and live.planned - live.last_index > RETARGET_MARGIN:
                await self.send("extend", {"type": "extend", "minutes": rng.choice((-1.0, -0.5, 0.5, 1.0))})
        else:
            await self.send("status", {"type": "status"})


async def throwaway(soak: Soak, rng: random.Random) -> None:
    """A connection that sends what should close it (or a binary frame); the outcome is counted."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    kind = rng.choice(
        ("oversized", "oversized deep", "wrong token", "binary", "flood", "no auth", "bad handshake")
    )
    outcome = "open"
    try:
        if kind == "bad handshake":
            from websockets.asyncio.client import connect

            try:
                async with connect(
                    soak.url, additional_headers={"Authorization": "Bearer nope"}, open_timeout=20
                ):
                    outcome = "accepted!"
            except InvalidStatus as exc:
                outcome = f"HTTP {exc.response.status_code}"
            soak.throwaway[f"{kind}: {outcome}"] += 1
            return
        async with _connect(soak, token=kind != "wrong token" and kind != "no auth") as ws:
            json.loads(await ws.recv())
            if kind == "oversized":
                await ws.send(json.dumps({"type": "hello", "client": "x" * 70000}))
            elif kind == "oversized deep":
                await ws.send("[" * 70000)
            elif kind == "wrong token":
                data = await _request(soak, ws, '{"type":"auth","token":"wrong"}', "wrong token", "throwaway")
                outcome = str((data or {}).get("code"))
            elif kind == "no auth":
                data = await _request(soak, ws, '{"type":"status"}', "status without auth", "throwaway")
                outcome = str((data or {}).get("code"))
            elif kind == "binary":
                data = await _request(soak, ws, b'{"type":"status"}', "binary", "throwaway")
                outcome = str((data or {}).get("code"))
            elif kind == "flood":
                for _ in range(120):
                    await ws.send('{"type":"status"}')
                codes = Counter[str]()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        async for message in ws:
                            data = json.loads(message)
                            codes[data.get("code", data["type"])] += 1
                            soak.reply("throwaway", "flood", data)
                outcome = ",".join(f"{k} {v}" for k, v in sorted(codes.items()))
            if kind in ("oversized", "oversized deep"):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        async for _ in ws:
                            pass
    except ConnectionClosed as exc:
        soak.closed(f"throwaway {kind}", exc)
        code = getattr(exc.rcvd, "code", None)
        outcome = f"{outcome}, closed {code}" if outcome != "open" else f"closed {code}"
    soak.throwaway[f"{kind}: {outcome}"] += 1


# ---------------------------------------------------------------------- the run


@dataclass
class Sample:
    minute: int
    rss: float
    hwm: float
    fds: int


async def drive(
    args: argparse.Namespace, proc: subprocess.Popen[bytes], url: str, token: str
) -> dict[str, Any]:
    soak = Soak(args, url, token, random.Random(args.seed))
    soak.reader_events = [0] * max(args.subscribers - NON_READERS, 1)
    await wait_for_daemon(proc, url)
    tasks: list[asyncio.Task[Any]] = []
    for n in range(len(soak.reader_events)):  # ten at a time: a burst of 100 handshakes is not the test
        tasks.append(asyncio.create_task(reader(soak, n)))
        if n % 10 == 9:
            await asyncio.sleep(0.2)
    if args.subscribers > NON_READERS:
        tasks.append(asyncio.create_task(non_readers(soak)))
    fuzzer = asyncio.create_task(Fuzzer(soak).run())
    wait_s = max(6.0, 1.5 * args.clip_seconds / args.speed)  # two clip steps of the sped-up sink
    tasks.append(asyncio.create_task(dump_stalls(soak, proc.pid, args.log.parent, wait_s)))
    samples: list[Sample] = []
    started = time.monotonic()
    rss_every_5s: list[tuple[float, float]] = []
    tasks.append(asyncio.create_task(sample_rss(proc.pid, started, rss_every_5s)))
    cpu = (proc_status(proc.pid).get("cpu_s", 0.0), time.process_time(), started)
    print(
        f"{'min':>4} {'RSS MB':>7} {'fds':>5} {'underruns':>9} {'gap s':>6} {'bridges':>7} {'errors':>6} "
        f"{'internal':>8} {'segments':>8} {'sessions':>8} {'requests':>8} {'hangs':>5} {'max reply s':>11} "
        f"{'daemon CPU':>10} {'soak CPU':>8} {'load':>5}",
        flush=True,
    )
    for minute in range(1, int(args.minutes) + 1):
        while time.monotonic() < started + 60.0 * minute:
            await asyncio.sleep(1.0)
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}; see {args.log}")
            if fuzzer.done():
                fuzzer.result()  # a bug of the soak: raise it
        st = proc_status(proc.pid)
        samples.append(Sample(minute, st.get("VmRSS", 0.0), st.get("VmHWM", 0.0), int(st.get("fds", 0))))
        ended = sum(1 for s in soak.sessions.values() if s.ended)
        now = (st.get("cpu_s", 0.0), time.process_time(), time.monotonic())
        wall = now[2] - cpu[2]
        daemon_cpu, soak_cpu = (now[0] - cpu[0]) / wall, (now[1] - cpu[1]) / wall
        cpu = now
        print(
            f"{minute:>4} {samples[-1].rss:>7.1f} {samples[-1].fds:>5} {soak.events['underrun']:>9} "
            f"{soak.underrun_frames / 44100:>6.1f} "
            f"{soak.events['bridge']:>7} {soak.events['error']:>6} {len(soak.internal):>8} "
            f"{soak.events['segment_started']:>8} {ended:>8} {soak.requests:>8} {len(soak.hangs):>5} "
            f"{soak.minute_latency:>11.2f} {100 * daemon_cpu:>9.0f}% {100 * soak_cpu:>7.0f}% "
            f"{os.getloadavg()[0]:>5.1f}",
            flush=True,
        )
        soak.minute_latency = 0.0
    soak.stop.set()
    fuzzer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await fuzzer
    await asyncio.sleep(1.0)
    final = proc_status(proc.pid)
    # SIGTERM with every subscriber still connected (and the non-readers not reading)
    soak.shutting_down = True
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(proc.wait, 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = await asyncio.to_thread(proc.wait)
    sigterm_s = time.monotonic() - sent
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "soak": soak,
        "samples": samples,
        "rss": rss_every_5s,
        "final": final,
        "sigterm_s": sigterm_s,
        "exit_code": code,
    }


async def dump_stalls(soak: Soak, pid: int, folder: Path, wait_s: float) -> None:
    """When a session waits for its next segment longer than ``wait_s`` of wall time, save the
    daemon's thread stacks (``py-spy dump``, where installed) to ``stall-N.txt``: what it did."""
    py_spy = shutil.which("py-spy")
    dumps = 0
    while py_spy is not None and dumps < 5:
        await asyncio.sleep(1.0)
        live = soak.sessions.get(soak.current or "")
        if live is None or live.ended or time.monotonic() - live.last_at < wait_s:
            continue
        dumps += 1
        waited = time.monotonic() - live.last_at
        out = await asyncio.to_thread(
            subprocess.run, [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
        )
        text = f"session {live.session_id}: {waited:.1f} s since its segment {live.last_index}\n"
        (folder / f"stall-{dumps}.txt").write_text(text + out.stdout + out.stderr)
        print(f"     stall: {text.strip()}; stacks in {folder / f'stall-{dumps}.txt'}", flush=True)
        await asyncio.sleep(20.0)


async def sample_rss(pid: int, started: float, out: list[tuple[float, float]]) -> None:
    """The daemon's RSS every 5 s (the growth compares minute medians: one sample catches a clip
    being made or not)."""
    while True:
        rss = proc_status(pid).get("VmRSS")
        if rss:
            out.append((time.monotonic() - started, rss))
        await asyncio.sleep(5.0)


def rss_growth(samples: list[tuple[float, float]], minutes: float) -> tuple[float, float, float]:
    """``(baseline, final, growth)``: the median RSS of the second minute (the first one after the
    first minute) against that of the last minute."""

    def median(lo: float, hi: float) -> float:
        values = sorted(rss for t, rss in samples if lo <= t < hi)
        return values[len(values) // 2] if values else 0.0

    end = 60.0 * int(minutes)
    base = median(60.0, 120.0) or median(0.0, 60.0)
    last = median(end - 60.0, end) if end >= 180.0 else median(end - 30.0, end)
    return base, last, (last - base) / base if base else 0.0


async def wait_for_daemon(proc: subprocess.Popen[bytes], url: str) -> None:
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode} before it listened")
        try:
            async with connect(url, open_timeout=5):
                return
        except (OSError, TimeoutError):
            await asyncio.sleep(0.5)
    raise SystemExit("the daemon did not listen within 120 s")


# ---------------------------------------------------------------------- the figures


@dataclass
class SessionRun:
    session_id: str
    planned: int
    indices: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # session start, each segment start, end
    engines: Counter[str] = field(default_factory=Counter)
    retargets: int = 0
    end: str = "running"
    played_s: float = 0.0

    def distinct(self) -> list[int]:
        seen: list[int] = []
        for index in self.indices:
            if index not in seen:
                seen.append(index)
        return seen

    def skipped(self) -> list[int]:
        """Indices missing from 0, 1, ...: up to the last one heard, or to N - 1 when finished."""
        last = self.planned - 1 if self.end == "finished" else max(self.indices, default=-1)
        return sorted(set(range(last + 1)) - set(self.indices))

    def out_of_order(self) -> bool:
        distinct = self.distinct()
        return distinct != sorted(distinct) or any(i >= self.planned or i < 0 for i in distinct)

    def max_gap(self) -> float:
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0.0)


def read_sessions(path: Path) -> tuple[list[SessionRun], Counter[str], int]:
    """Every session of the daemon's event log, its event counts and underrun frames."""
    runs: list[SessionRun] = []
    counts: Counter[str] = Counter()
    underrun_frames = 0
    current: SessionRun | None = None
    if not path.is_file():
        return runs, counts, underrun_frames
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        kind, data, when = event["type"], event["data"], event["time"]
        counts[kind] += 1
        if kind == "underrun":
            underrun_frames += data["frames"]
        if kind == "session_started":
            current = SessionRun(data["session_id"], len(data["plan"]["segments"]), times=[when])
            runs.append(current)
        elif current is None:
            continue
        elif kind == "plan_changed":
            current.planned = len(data["plan"]["segments"])
            current.retargets += data["reason"] == "target"
        elif kind == "segment_started":
            current.indices.append(data["index"])
            current.engines[data["engine"]] += 1
            current.times.append(when)
        elif kind == "session_ended":
            current.end, current.played_s = data["reason"], data["played_s"]
            current.times.append(when)
            current = None
    return runs, counts, underrun_frames


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(args: argparse.Namespace, result: dict[str, Any], folder: Path) -> bool:
    soak: Soak = result["soak"]
    samples: list[Sample] = result["samples"]
    runs, counts, underrun_frames = read_sessions(folder / "state" / "events.jsonl")
    slow_s = 3 * args.clip_seconds / args.speed  # three clips' worth of wall time
    stall_s = max(30.0, 10 * args.clip_seconds / args.speed)
    print()
    print(
        "sessions (from the daemon's event log; max gap: the longest wait for a segment, "
        f"slow past {slow_s:.0f} s, a stall past {stall_s:.0f} s)"
    )
    print(
        f"{'#':>3} {'session':<12} {'end':<8} {'played/planned':>14} {'skipped':>8} {'repeats':>7} "
        f"{'retargets':>9} {'fallback':>8} {'max gap s':>9}"
    )
    problems: list[str] = []
    for n, run in enumerate(runs, 1):
        distinct = run.distinct()
        skipped = run.skipped()
        repeats = len(run.indices) - len(distinct)
        fallback = run.engines.get("builtin", 0)
        print(
            f"{n:>3} {run.session_id:<12} {run.end:<8} {len(distinct):>6}/{run.planned:<7} "
            f"{len(skipped):>8} {repeats:>7} {run.retargets:>9} {fallback:>8} {run.max_gap():>9.1f}"
        )
        if skipped:
            problems.append(f"session {run.session_id} ({run.end}) skipped segments {skipped}")
        if run.out_of_order():
            problems.append(f"session {run.session_id}: segments out of order {run.indices}")
        if repeats:
            problems.append(f"session {run.session_id}: segments started twice: {run.indices}")
    finished = [r for r in runs if r.end == "finished"]
    complete = [r for r in finished if not r.skipped() and not r.out_of_order()]
    stalls = [r for r in runs if r.max_gap() > stall_s]
    slow = [r for r in runs if r.max_gap() > slow_s]
    pace = engine_pace(folder / "engine-trace.log", args)
    stats = json.loads(args.stats.read_text()) if args.stats.is_file() else {}
    log_text = args.log.read_text(encoding="utf-8", errors="replace") if args.log.is_file() else ""
    error_lines = [line for line in log_text.splitlines() if line.startswith(("ERROR", "CRITICAL"))]
    never_retrieved = log_text.count("exception was never retrieved")

    rss = [s.rss for s in samples]
    base, last, growth = rss_growth(result["rss"], args.minutes)
    peak = max([result["final"].get("VmHWM", 0.0), *rss]) if rss else 0.0
    fds = [s.fds for s in samples]
    played_min = sum(r.played_s for r in runs) / 60.0
    internal = soak.internal
    print()
    print(
        f"audio played          : {played_min:.0f} min in {len(runs)} sessions ({len(finished)} finished, "
        f"{sum(r.end == 'stopped' for r in runs)} stopped) at {args.speed:g}x"
    )
    print(f"engine calls / faults : {stats.get('calls', {})} / {stats.get('faults', {})}")
    for line in pace:
        print(f"engine pace           : {line}")
    print(f"events (event log)    : {dict(sorted(counts.items()))}")
    print(
        f"requests              : {soak.requests}, replies {dict(soak.replies)}, "
        f"max {soak.max_latency[0]:.2f} s ({soak.max_latency[1]})"
    )
    if soak.accepted_hostile:
        print(f"hostile but accepted  : {dict(soak.accepted_hostile)}")
    if soak.refused_valid:
        print(f"valid but refused     : {dict(soak.refused_valid)}")
    print(f"throwaway connections : {dict(sorted(soak.throwaway.items()))}")
    print(f"client closes         : {dict(sorted(soak.closes.items()))}")
    events_per_reader = [n for n in soak.reader_events if n]
    if events_per_reader:
        print(
            f"events per reader     : {min(events_per_reader)}..{max(events_per_reader)} "
            f"({soak.reader_reconnects} reconnects)"
        )
    print(
        f"open fds              : {min(fds, default=0)}..{max(fds, default=0)} "
        f"(first {fds[0] if fds else 0}, "
        f"before SIGTERM {int(result['final'].get('fds', 0))})"
    )
    print(
        f"daemon log            : {len(error_lines)} ERROR lines, "
        f"{never_retrieved} unretrieved task exceptions"
        f" ({args.log})"
    )
    for line in error_lines[:10]:
        print(f"    {line[:200]}")
    for line in problems[:20]:
        print(f"    {line[:300]}")
    for line in (internal + soak.hangs)[:20]:
        print(f"    {line[:300]}")
    print()
    checks = [
        ("underruns", f"{counts['underrun']} events, {underrun_frames} frames", "0", counts["underrun"] == 0),
        ("internal errors", f"{len(internal)}", "0", not internal),
        ("hangs (reply > 1 s)", f"{len(soak.hangs)}", "0", not soak.hangs),
        (
            "segments keep advancing",
            f"{len(stalls)} stalled sessions, {counts_watchdog(runs, folder)} watchdog restarts; "
            f"longest wait {max((r.max_gap() for r in runs), default=0):.1f} s, {len(slow)} sessions "
            f"waited > {slow_s:.0f} s once (the engine behind the play head: see its pace)",
            f"each session to its end, no wait > {stall_s:.0f} s",
            not stalls and counts_watchdog(runs, folder) == 0,
        ),
        (
            "all segments played",
            f"{len(complete)}/{len(finished)} finished sessions played 0..N-1; "
            f"{sum(bool(r.skipped()) for r in runs)} sessions skipped segments",
            "all",
            len(complete) == len(finished) and not any(r.skipped() for r in runs) and bool(finished),
        ),
        (
            "SIGTERM to exit",
            f"{result['sigterm_s']:.2f} s (exit {result['exit_code']})",
            "<= 2 s",
            result["sigterm_s"] <= SIGTERM_MAX_S and result["exit_code"] == 0,
        ),
        (
            "RSS growth after minute 1",
            f"{100 * growth:+.1f} % (median of minute 2 {base:.0f} MB -> of the last minute {last:.0f} MB)",
            "< 10 %",
            growth < RSS_GROWTH_MAX,
        ),
        ("peak RSS", f"{peak:.0f} MB", "<= 300 MB", peak <= PEAK_RSS_MAX_MB),
    ]
    width = max(len(c[0]) for c in checks)
    for name, value, target, ok in checks:
        print(f"{name:<{width}} : {value}  (target {target})  {verdict(ok)}")
    return all(c[3] for c in checks)


def engine_pace(path: Path, args: argparse.Namespace) -> list[str]:
    """How long the engine took per finished clip (from the child's trace), against the wall time
    the sped-up sink takes to play one clip step (a clip less its crossfade)."""
    if not path.is_file():
        return []
    started: dict[str, float] = {}
    took: dict[str, list[tuple[float, float]]] = {"generate": [], "stream": []}
    for line in path.read_text().splitlines():
        when, kind, _index, what, *rest = line.split()
        if what == "start":
            started[kind] = float(when)
        elif what == "done" and kind in started:
            took[kind].append((float(when) - started.pop(kind), float(rest[0])))
    lines = []
    for kind, calls in took.items():
        if not calls:
            continue
        seconds = sorted(s for s, _ in calls)
        step = 0.75 * statistics.median(a for _, a in calls) / args.speed
        behind = sum(s > 0.75 * a / args.speed for s, a in calls)
        lines.append(
            f"{kind}: {len(calls)} clips, median {statistics.median(seconds):.2f} s, "
            f"90th percentile {seconds[int(0.9 * (len(seconds) - 1))]:.2f} s, max {seconds[-1]:.2f} s; "
            f"{behind} took longer than the sink plays a clip step ({step:.2f} s at {args.speed:g}x)"
        )
    return lines


def counts_watchdog(runs: list[SessionRun], folder: Path) -> int:
    path = folder / "state" / "events.jsonl"
    if not path.is_file():
        return 0
    return sum('"where":"producer watchdog"' in line for line in path.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall minutes of soak")
    parser.add_argument("--speed", type=float, default=10.0, help="null sink speed vs real time (10..20)")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="fraction of engine calls that raise")
    parser.add_argument("--subscribers", type=int, default=100, help="event subscribers (5 never read)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--session-minutes", type=float, default=5.0, help="length of each session")
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (kept anyway on a MISS)"
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        raise SystemExit(child_main(args.child, args.fault_rate, args.seed, args.stats))

    folder = Path(tempfile.mkdtemp(prefix="musicmed-soak-"))
    port, token = free_port(), secrets.token_hex(16)
    config = write_config(folder, args, port, token)
    args.log, args.stats = folder / "daemon.log", folder / "faults.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(config)]
    command += ["--fault-rate", str(args.fault_rate), "--seed", str(args.seed), "--stats", str(args.stats)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    print(
        f"soak: {args.minutes:g} min, null sink at {args.speed:g}x, {args.session_minutes:g}-min sessions, "
        f"fault rate {args.fault_rate:g}, {args.subscribers} subscribers ({NON_READERS} never read), "
        f"seed {args.seed}"
    )
    print(f"daemon: {' '.join(command)}  (log {args.log})", flush=True)
    with open(args.log, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        result = asyncio.run(drive(args, proc, f"ws://127.0.0.1:{port}/ws", token))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ok = report(args, result, folder)
    if ok and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"kept {folder}")


if __name__ == "__main__":
    main()
