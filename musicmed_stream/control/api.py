"""The daemon's control surface, as the control channel sees it (websocket server, web page, ctl).

The daemon implements :class:`SessionController`; :mod:`musicmed_stream.control.server` turns protocol
messages into these calls, their typed results into ``ok`` replies and the controller's
:class:`~musicmed_stream.control.events.Event` objects into ``event`` messages. Neither side
reaches into the other's internals, and this package imports nothing from the service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from musicmed_stream.bounds import ClipSeconds, Minutes, PathShape, Temperature
from musicmed_stream.emotion.point import VA

State = str | VA
"""A state on the circumplex: an emotion name, a mood tag, ``"valence,arousal"`` text, or a point."""

PlayState = Literal["idle", "playing", "paused", "stopping"]


@dataclass(frozen=True)
class StartOptions:
    """A session request; ``None`` fields take the configured session defaults (``[session]``),
    except ``start``: ``None`` is the listener's own "before" check-in of the last half hour when
    there is one (they said where they are), else ``[session] from``.

    ``replace``: start even though a session plays (it fades out first); without it, a start
    during a session is refused, so that a double tap or a second companion does not cut the
    listener's session short."""

    start: State | None
    target: State
    minutes: float | None = None
    clip_seconds: float | None = None
    path: Literal["line", "arc"] | None = None
    temperature: float | None = None
    seed: int | None = None
    replace: bool = False


class Preset(BaseModel):
    """A named session offered as one tap (``[[presets]]`` in config.toml): where it leads, for
    how long; ``from`` omitted: the listener says where they are (or the session default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=80)
    from_: str | None = Field(None, alias="from", min_length=1, max_length=200)
    to: str = Field(min_length=1, max_length=200)
    minutes: Minutes | None = None
    clip_seconds: ClipSeconds | None = None
    path: PathShape | None = None
    temperature: Temperature | None = None


DEFAULT_PRESETS = (
    Preset(name="Calm down, 15 min", to="calm", minutes=15),
    Preset(name="Fall asleep, 30 min", to="sleepy", minutes=30),
    Preset(name="Lift my mood, 20 min", to="happy", minutes=20),
)


@dataclass(frozen=True)
class CheckInResult:
    """A check-in was stored, with the session it belongs to (``None``: none yet)."""

    session_id: str | None
    moment: Literal["before", "after"]
    valence: float
    arousal: float


@dataclass(frozen=True)
class SessionInfo:
    """A session that was started: its id and its plan (``Plan.to_dict()``)."""

    session_id: str
    plan: dict[str, Any]


@dataclass(frozen=True)
class Replanned:
    """The rest of a session re-planned toward a new target, from segment ``from_index`` on."""

    from_index: int
    plan: dict[str, Any]


@dataclass(frozen=True)
class Status:
    """Where the daemon stands.

    Attributes
    ----------
    state : {"idle", "playing", "paused", "stopping"}
    session_id : str or None
    segment_index, segment_count : int or None
        The segment heard now, and how many the plan has.
    valence, arousal : float or None
        The heard segment's planned point.
    emotion, mood, instrument, genre, prompt : str or None
        The heard segment's tags and the prompt it was generated from.
    start_label, target_label : str or None
        Where the session started and where it is heading.
    played_s, total_s, remaining_s : float
        Session audio heard so far (pauses excluded), the played length of the whole plan (the
        crossfaded clip grid) and the difference; 0 when idle.
    buffer_s : float
        Audio ready ahead of the play head.
    volume, max_volume : float
        The volume, and the most any client may set (``playback.max_volume``).
    sleep_timer_s : float or None
        Session audio left until the sleep timer fades the session out.
    plan : dict or None
        ``Plan.to_dict()`` of the running session, when asked for (``status(include_plan=True)``).
    presets : list of dict
        The configured presets (``Preset`` as JSON, ``from``/``to`` spelled so).
    """

    state: PlayState
    session_id: str | None = None
    segment_index: int | None = None
    segment_count: int | None = None
    valence: float | None = None
    arousal: float | None = None
    emotion: str | None = None
    mood: str | None = None
    instrument: str | None = None
    genre: str | None = None
    prompt: str | None = None
    start_label: str | None = None
    target_label: str | None = None
    played_s: float = 0.0
    total_s: float = 0.0
    remaining_s: float = 0.0
    buffer_s: float = 0.0
    volume: float = 1.0
    max_volume: float = 1.0
    sleep_timer_s: float | None = None
    plan: dict[str, Any] | None = None
    presets: list[dict[str, Any]] = field(default_factory=list)


class SessionController(Protocol):
    """What a control client may ask of the daemon. Bad values raise ``MusicMedError``."""

    async def start_session(self, options: StartOptions) -> SessionInfo: ...

    async def set_target(self, target: State) -> Replanned: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def skip(self) -> None: ...

    async def stop(self, fade_seconds: float | None = None) -> None: ...

    async def set_volume(self, volume: float) -> float:
        """Set the output volume; returns the volume now in effect."""
        ...

    def status(self, include_plan: bool = False) -> Status:
        """Where the daemon stands; ``Status.plan`` is filled only with ``include_plan``."""
        ...

    async def extend(self, minutes: float) -> Replanned:
        """Make the running session ``minutes`` longer (negative: shorter), re-planned from where
        the listener is."""
        ...

    async def sleep_timer(self, minutes: float | None) -> float | None:
        """Fade the session out after ``minutes`` more of it (``None``: no timer); returns the
        seconds left."""
        ...

    async def check_in(self, moment: Literal["before", "after"], point: VA) -> CheckInResult: ...

    async def history(self, limit: int) -> list[dict[str, Any]]:
        """The latest sessions, newest first, with their check-ins."""
        ...

    def subscribe(self) -> asyncio.Queue[Any]:
        """A queue that receives every :class:`~musicmed_stream.control.events.Event` from now on."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None: ...


__all__ = [
    "DEFAULT_PRESETS",
    "CheckInResult",
    "PlayState",
    "Preset",
    "Replanned",
    "SessionController",
    "SessionInfo",
    "StartOptions",
    "State",
    "Status",
]
