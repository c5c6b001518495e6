"""The daemon's control surface, as seen by the control channel (websocket server, web page, ctl).

The service implements :class:`SessionController`; ``musicmed_stream.control`` translates
protocol messages into these calls and :class:`Event` objects into protocol events. Neither side
reaches into the other's internals.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

EventType = Literal[
    "session_started",
    "segment_started",
    "plan_changed",
    "buffer_level",
    "bridge",
    "underrun",
    "paused",
    "resumed",
    "volume",
    "error",
    "session_ended",
]


@dataclass(frozen=True)
class Event:
    """Something that happened in the daemon, pushed to subscribed clients.

    ``data`` per type (all JSON-serializable):

    - ``session_started``: ``session_id``, ``plan`` (``Plan.to_dict()``)
    - ``segment_started``: ``index``, ``valence``, ``arousal``, ``emotion``, ``mood``, ``prompt``,
      ``start_s`` (session time at which its audio begins)
    - ``plan_changed``: ``from_index``, ``plan``, ``reason``
    - ``buffer_level``: ``seconds`` (audio ready ahead of the play head), ``target_seconds``
    - ``bridge``: ``index``, ``seconds``, ``reason``; ``underrun``: ``frames``
    - ``paused`` / ``resumed``: ``{}``; ``volume``: ``volume``
    - ``error``: ``message``, ``where``
    - ``session_ended``: ``reason`` (``finished`` | ``stopped`` | ``error``), ``played_s``
    """

    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class StartOptions:
    """A session request; ``None`` fields take the configured session defaults."""

    start: str
    target: str
    minutes: float | None = None
    clip_seconds: float | None = None
    path: str | None = None
    temperature: float | None = None
    seed: int | None = None


class SessionController(Protocol):
    """What a control client may ask of the daemon. Bad values raise ``MusicMedError``."""

    async def start_session(self, options: StartOptions) -> dict[str, Any]: ...

    async def set_target(self, target: str) -> dict[str, Any]: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def skip(self) -> None: ...

    async def stop(self, fade_seconds: float | None = None) -> None: ...

    async def set_volume(self, volume: float) -> None: ...

    def status(self) -> dict[str, Any]:
        """``state`` (idle|playing|paused|stopping), ``session_id``, ``segment_index``, ``valence``,
        ``arousal``, ``emotion``, ``prompt``, ``played_s``, ``buffer_s``, ``volume``, ``plan``."""
        ...

    def subscribe(self) -> asyncio.Queue[Event]: ...

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None: ...
