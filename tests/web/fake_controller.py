"""A small, honest ``SessionController`` for testing the control server without the daemon.

It keeps real session state (idle/playing/paused, a plan of straight-line segments, volume),
resolves targets from a few names or ``"v,a"`` strings, raises ``MusicMedError`` for what the real
daemon would refuse, and publishes events to its subscribers. It is the server's counterpart in
the tests, not the thing under test.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from musicmed_stream.control.api import CheckInResult, Replanned, SessionInfo, StartOptions, State
from musicmed_stream.control.events import EVENT_MODEL, Event
from musicmed_stream.emotion import VA
from musicmed_stream.errors import MusicMedError, UnknownEmotionError

NAMES = {"sad": (-0.8, -0.3), "calm": (0.3, -0.8), "happy": (0.8, 0.3), "tense": (-0.3, 0.8)}
INSTRUMENTS = ("piano", "strings", "acousticguitar", "flute")
CLIP_S, CROSSFADE_S = 30.0, 2.5  # clips overlap like the daemon's: the session is shorter than their sum


def resolve(spec: State) -> tuple[float, float]:
    if isinstance(spec, VA):
        return spec.valence, spec.arousal
    if spec in NAMES:
        return NAMES[spec]
    try:
        v, a = (float(x) for x in spec.split(","))
    except ValueError:
        raise UnknownEmotionError(f"unknown emotion {spec!r}") from None
    if not (-1 <= v <= 1 and -1 <= a <= 1):
        raise UnknownEmotionError(f"{spec!r} is outside the circumplex")
    return v, a


def nearest_name(v: float, a: float) -> str:
    return min(NAMES, key=lambda name: math.dist(NAMES[name], (v, a)))


def line_plan(
    start: tuple[float, float],
    target: tuple[float, float],
    n: int,
    first_index: int = 0,
    start_s: float = 0.0,
) -> dict[str, Any]:
    """A straight path of ``n`` clips, labelled like the daemon's plan (emotion, mood, instrument, genre)."""
    segments = []
    for i in range(n):
        v = start[0] + (target[0] - start[0]) * i / (n - 1)
        a = start[1] + (target[1] - start[1]) * i / (n - 1)
        emotion = nearest_name(v, a)
        instrument = INSTRUMENTS[(first_index + i) % len(INSTRUMENTS)]
        segments.append(
            {
                "index": first_index + i,
                "start_s": start_s + i * (CLIP_S - CROSSFADE_S),
                "duration_s": CLIP_S,
                "valence": v,
                "arousal": a,
                "emotion": emotion,
                "mood": emotion,
                "instrument": instrument,
                "genre": "ambient",
                "prompt": f"{emotion}, {emotion}, {instrument}, ambient",
            }
        )
    return {
        "start": {"valence": start[0], "arousal": start[1]},
        "target": {"valence": target[0], "arousal": target[1]},
        "segments": segments,
    }


def plan_total_s(plan: dict[str, Any]) -> float:
    last = plan["segments"][-1]
    return float(last["start_s"] + last["duration_s"])


class FakeController:
    def __init__(self) -> None:
        self.state = "idle"
        self.plan: dict[str, Any] | None = None
        self.index = 0
        self.volume = 1.0
        self.queues: list[asyncio.Queue[Event]] = []
        self.calls: list[tuple[str, Any]] = []
        self.fail_next: BaseException | None = None
        # Played time: banked seconds plus the running stretch since ``_since`` while playing.
        self._played = 0.0
        self._since: float | None = None
        # Set by a test to offer presets in ``status()`` (the page shows them as buttons).
        self.presets: list[dict[str, Any]] | None = None
        self.checkins: list[tuple[str, float, float]] = []
        # The care limit (``playback.max_volume``): a volume above it is capped, as the daemon does.
        self.max_volume = 1.0
        self.session_id: str | None = None
        self.sleep_s: float | None = None  # session seconds left until the sleep timer fades out
        # The listening history, oldest first, in the daemon's ``history`` form (a test may add
        # older sessions); started and stopped sessions and check-ins are entered as they happen.
        self.sessions: list[dict[str, Any]] = []
        self._loose: list[dict[str, Any]] = []  # "before" check-ins waiting for their session

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
            queue.put_nowait(Event(EVENT_MODEL[type](**data)))

    def _require_session(self) -> None:
        if self.state == "idle":
            raise MusicMedError("no session is running")

    def played_s(self) -> float:
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return round(self._played + running, 3)

    def emit_segment(self, index: int) -> dict[str, Any]:
        """The listener now hears segment ``index``: a ``segment_started`` with the daemon's fields."""
        assert self.plan is not None
        seg = next(s for s in self.plan["segments"] if s["index"] == index)
        self.index = index
        tags = ("index", "valence", "arousal", "emotion", "mood", "instrument", "genre", "prompt", "start_s")
        times = self.times()
        self.emit(
            "segment_started",
            **{k: seg[k] for k in tags},
            played_s=times["played_s"],
            total_s=times["total_s"],
        )
        return seg

    def times(self) -> dict[str, float | None]:
        """``played_s``, ``total_s``, ``remaining_s`` as the daemon reports them (None when idle)."""
        if self.plan is None or self.state == "idle":
            return {"played_s": None, "total_s": None, "remaining_s": None}
        total, played = plan_total_s(self.plan), self.played_s()
        return {"played_s": played, "total_s": total, "remaining_s": round(max(0.0, total - played), 3)}

    async def start_session(self, options: StartOptions) -> SessionInfo:
        self._check("start_session", options)
        if self.state != "idle" and not options.replace:
            # The daemon's refusal, so that a double tap never cuts a session short.
            raise MusicMedError("a session plays: lead it elsewhere with set_target, or start with replace")
        begin = options.start if options.start is not None else "sad"  # the daemon's [session] from
        start, target = resolve(begin), resolve(options.target)
        if self.state != "idle":
            self._end("stopped")
        labels = {"start_label": begin, "target_label": options.target}
        self.plan = line_plan(start, target, 5) | labels
        self.state, self.index = "playing", 0
        self._played, self._since = 0.0, time.monotonic()
        self.sleep_s = None
        self.session_id = f"s{len(self.sessions) + 1}"
        self.sessions.append(
            {
                "id": self.session_id,
                "started_at": time.time(),
                "ended_at": None,
                "start_label": str(options.start),
                "target_label": str(options.target),
                "start": list(start),
                "target": list(target),
                "planned_s": plan_total_s(self.plan),
                "played_s": None,
                "end_reason": None,
                "recording": None,
                "recording_offset_s": None,
                "checkins": self._loose,
            }
        )
        self._loose = []
        self.emit("session_started", session_id=self.session_id, plan=self.plan)
        self.emit_segment(0)
        return SessionInfo(self.session_id, self.plan)

    def _end(self, reason: str) -> float:
        """The session ends: its history entry says how, and how much of it played."""
        played = self.played_s()
        self.state, self._since = "idle", None
        if self.sessions and self.sessions[-1]["id"] == self.session_id:
            self.sessions[-1] |= {"ended_at": time.time(), "played_s": played, "end_reason": reason}
        return played

    async def set_target(self, target: State) -> Replanned:
        self._check("set_target", target)
        self._require_session()
        assert self.plan is not None
        here = self.plan["segments"][self.index]
        # The clip playing is kept; four new ones follow it, from here to the new target.
        after = here["start_s"] + CLIP_S - CROSSFADE_S
        rest = line_plan((here["valence"], here["arousal"]), resolve(target), 4, self.index + 1, after)
        segments = self.plan["segments"][: self.index + 1] + rest["segments"]
        label = target if isinstance(target, str) else f"{target.valence:+.2f},{target.arousal:+.2f}"
        self.plan = self.plan | {"target": rest["target"], "target_label": label, "segments": segments}
        if self.sessions and self.sessions[-1]["id"] == self.session_id:
            self.sessions[-1] |= {"target_label": label, "target": list(resolve(target))}
        self.emit("plan_changed", from_index=self.index + 1, plan=self.plan, reason="target")
        return Replanned(self.index + 1, self.plan)

    async def pause(self) -> None:
        self._check("pause")
        self._require_session()
        self.state = "paused"
        self._played, self._since = self.played_s(), None
        self.emit("paused")

    async def resume(self) -> None:
        self._check("resume")
        self._require_session()
        self.state = "playing"
        self._since = time.monotonic()
        self.emit("resumed")

    async def skip(self) -> None:
        self._check("skip")
        self._require_session()
        self.index += 1

    async def stop(self, fade_seconds: float | None = None) -> None:
        self._check("stop", fade_seconds)
        self._require_session()
        played = self._end("stopped")
        self.emit("session_ended", reason="stopped", played_s=played)

    async def set_volume(self, volume: float) -> float:
        self._check("set_volume", volume)
        if not 0 <= volume <= 1:
            raise MusicMedError("volume out of range")
        self.volume = min(volume, self.max_volume)
        self.emit("volume", volume=self.volume)
        return self.volume

    def status(self, include_plan: bool = False) -> dict[str, Any]:
        seg = self.plan["segments"][self.index] if self.plan else None
        live = self.state != "idle"
        return {
            "state": self.state,
            "session_id": self.session_id if live else None,
            "segment_index": self.index if seg else None,
            "segment_count": len(self.plan["segments"]) if self.plan else None,
            "valence": seg["valence"] if seg else None,
            "arousal": seg["arousal"] if seg else None,
            "emotion": seg["emotion"] if seg else None,
            "start_label": self.plan.get("start_label") if self.plan else None,
            "target_label": self.plan.get("target_label") if self.plan else None,
            "volume": self.volume,
            "max_volume": self.max_volume,
            "sleep_timer_s": self.sleep_timer_left() if live else None,
            "plan": self.plan if include_plan else None,
            **self.times(),
        } | ({"presets": self.presets} if self.presets is not None else {})

    def sleep_timer_left(self) -> float | None:
        """Session seconds until the sleep timer fades out (it counts down with the played time)."""
        if self.sleep_s is None:
            return None
        return round(max(0.0, self.sleep_s - self.played_s()), 3)

    async def extend(self, minutes: float) -> Replanned:
        self._check("extend", minutes)
        self._require_session()
        assert self.plan is not None
        # Longer or shorter by whole clips of the grid, re-planned from the next part on, toward
        # the same target (at least one part after the one playing).
        left = len(self.plan["segments"]) - self.index - 1
        count = max(1, left + round(minutes * 60 / (CLIP_S - CROSSFADE_S)))
        here = self.plan["segments"][self.index]
        target = (self.plan["target"]["valence"], self.plan["target"]["arousal"])
        after = here["start_s"] + CLIP_S - CROSSFADE_S
        step = line_plan((here["valence"], here["arousal"]), target, count + 1, self.index, here["start_s"])
        rest = [
            s | {"start_s": after + i * (CLIP_S - CROSSFADE_S)} for i, s in enumerate(step["segments"][1:])
        ]
        self.plan = self.plan | {"segments": self.plan["segments"][: self.index + 1] + rest}
        self.emit("plan_changed", from_index=self.index + 1, plan=self.plan, reason="length")
        return Replanned(self.index + 1, self.plan)

    async def sleep_timer(self, minutes: float | None) -> float | None:
        self._check("sleep_timer", minutes)
        self._require_session()
        self.sleep_s = None if minutes is None else self.played_s() + minutes * 60.0
        return self.sleep_timer_left()

    async def check_in(self, moment: str, point: VA) -> CheckInResult:
        self._check("check_in", (moment, point))
        self.checkins.append((moment, point.valence, point.arousal))
        entry = {"moment": moment, "valence": point.valence, "arousal": point.arousal, "at": time.time()}
        # As the daemon does: during a session it is that session's; an "after" right after one
        # goes to the session that ended; a "before" waits for the next session.
        last = self.sessions[-1] if self.sessions else None
        if last is not None and (self.state != "idle" or moment == "after"):
            last["checkins"].append(entry)
            session = last["id"]
        else:
            self._loose = [*self._loose, entry]
            session = None
        return CheckInResult(session, moment, point.valence, point.arousal)  # type: ignore[arg-type]

    async def history(self, limit: int) -> list[dict[str, Any]]:
        self._check("history", limit)
        return [dict(s) for s in reversed(self.sessions[-limit:])]

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)
        self.queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self.queues.remove(queue)
