"""The daemon's control surface, as the control channel sees it (websocket server, web page, ctl).

The daemon implements :class:`SessionController`; :mod:`musicmed_stream.control.server` turns protocol
messages into these calls, their typed results into ``ok`` replies and the controller's
:class:`~musicmed_stream.control.events.Event` objects into ``event`` messages. Neither side
reaches into the other's internals, and this package imports nothing from the service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from musicmed_stream.emotion.point import VA

State = str | VA
"""A state on the circumplex: an emotion name, a mood tag, ``"valence,arousal"`` text, or a point."""

PlayState = Literal["idle", "playing", "paused", "stopping"]


@dataclass(frozen=True)
class StartOptions:
    """A session request; ``None`` fields take the configured session defaults (``[session]``)."""

    start: State
    target: State
    minutes: float | None = None
    clip_seconds: float | None = None
    path: Literal["line", "arc"] | None = None
    temperature: float | None = None
    seed: int | None = None


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
    volume : float
    plan : dict or None
        ``Plan.to_dict()`` of the running session.
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
    plan: dict[str, Any] | None = None


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

    def status(self) -> Status: ...

    def subscribe(self) -> asyncio.Queue[Any]:
        """A queue that receives every :class:`~musicmed_stream.control.events.Event` from now on."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None: ...


__all__ = ["PlayState", "Replanned", "SessionController", "SessionInfo", "StartOptions", "State", "Status"]
