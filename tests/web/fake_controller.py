"""A small, honest ``SessionController`` for testing the control server without the daemon.

It keeps real session state (idle/playing/paused, a plan of straight-line segments, volume),
resolves targets from a few names or ``"v,a"`` strings, raises ``MusicMedError`` for what the real
daemon would refuse, and publishes events to its subscribers. It is the server's counterpart in
the tests, not the thing under test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from musicmed_stream.errors import MusicMedError, UnknownEmotionError
from musicmed_stream.service.api import Event, StartOptions

NAMES = {"sad": (-0.8, -0.3), "calm": (0.3, -0.8), "happy": (0.8, 0.3), "tense": (-0.3, 0.8)}


def resolve(spec: str) -> tuple[float, float]:
    if spec in NAMES:
        return NAMES[spec]
    try:
        v, a = (float(x) for x in spec.split(","))
    except ValueError:
        raise UnknownEmotionError(f"unknown emotion {spec!r}") from None
    if not (-1 <= v <= 1 and -1 <= a <= 1):
        raise UnknownEmotionError(f"{spec!r} is outside the circumplex")
    return v, a


def line_plan(start: tuple[float, float], target: tuple[float, float], n: int) -> dict[str, Any]:
    segments = [
        {
            "index": i,
            "valence": start[0] + (target[0] - start[0]) * i / (n - 1),
            "arousal": start[1] + (target[1] - start[1]) * i / (n - 1),
        }
        for i in range(n)
    ]
    return {
        "start": {"valence": start[0], "arousal": start[1]},
        "target": {"valence": target[0], "arousal": target[1]},
        "segments": segments,
    }


class FakeController:
    def __init__(self) -> None:
        self.state = "idle"
        self.plan: dict[str, Any] | None = None
        self.index = 0
        self.volume = 1.0
        self.queues: list[asyncio.Queue[Event]] = []
        self.calls: list[tuple[str, Any]] = []
        self.fail_next: BaseException | None = None

    def names(self) -> str:
        """The controller methods called so far, in order, space-separated."""
        return " ".join(name for name, _ in self.calls)

    def _check(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def emit(self, type: str, **data: Any) -> None:
        for queue in self.queues:
            queue.put_nowait(Event(type, data))  # type: ignore[arg-type]

    def _require_session(self) -> None:
        if self.state == "idle":
            raise MusicMedError("no session is running")

    async def start_session(self, options: StartOptions) -> dict[str, Any]:
        self._check("start_session", options)
        start, target = resolve(options.start), resolve(options.target)
        self.plan = line_plan(start, target, 5)
        self.state, self.index = "playing", 0
        self.emit("session_started", session_id="s1", plan=self.plan)
        self.emit("segment_started", index=0, valence=start[0], arousal=start[1], emotion="sad")
        return {"session_id": "s1", "plan": self.plan}

    async def set_target(self, target: str) -> dict[str, Any]:
        self._check("set_target", target)
        self._require_session()
        assert self.plan is not None
        here = self.plan["segments"][self.index]
        self.plan = line_plan((here["valence"], here["arousal"]), resolve(target), 4)
        self.emit("plan_changed", from_index=self.index, plan=self.plan, reason="set_target")
        return {"plan": self.plan}

    async def pause(self) -> None:
        self._check("pause")
        self._require_session()
        self.state = "paused"
        self.emit("paused")

    async def resume(self) -> None:
        self._check("resume")
        self._require_session()
        self.state = "playing"
        self.emit("resumed")

    async def skip(self) -> None:
        self._check("skip")
        self._require_session()
        self.index += 1

    async def stop(self, fade_seconds: float | None = None) -> None:
        self._check("stop", fade_seconds)
        self._require_session()
        self.state = "idle"
        self.emit("session_ended", reason="stopped", played_s=1.0)

    async def set_volume(self, volume: float) -> None:
        self._check("set_volume", volume)
        if not 0 <= volume <= 1:
            raise MusicMedError("volume out of range")
        self.volume = volume
        self.emit("volume", volume=volume)

    def status(self) -> dict[str, Any]:
        seg = self.plan["segments"][self.index] if self.plan else None
        return {
            "state": self.state,
            "segment_index": self.index if seg else None,
            "valence": seg["valence"] if seg else None,
            "arousal": seg["arousal"] if seg else None,
            "volume": self.volume,
            "plan": self.plan,
        }

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)
        self.queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self.queues.remove(queue)
