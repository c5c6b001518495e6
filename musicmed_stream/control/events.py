"""What the daemon reports: one payload model per event type, part of the control protocol.

The daemon emits :class:`Event` objects carrying one of these payloads; the websocket server sends
them as ``event`` messages, the event log writes them as JSON lines, and the protocol's JSON Schema
(``protocols/control-v1.schema.json``) describes each payload, all from these models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

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

Plan = dict[str, Any]  # ``Plan.to_dict()``: start, target, labels, settings, segments (docs/protocol.md)


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_serialization_defaults_required=True)
    type: ClassVar[EventType]


class SessionStarted(EventData):
    """A session was planned and begins to play."""

    type: ClassVar[EventType] = "session_started"
    session_id: str
    plan: Plan


class SegmentStarted(EventData):
    """The listener now hears the first sound of a segment's clip."""

    type: ClassVar[EventType] = "segment_started"
    index: int
    valence: float
    arousal: float
    emotion: str
    mood: str
    instrument: str
    genre: str
    prompt: str
    start_s: float = Field(
        description="Where the clip starts in the session's audio (seconds played before it)."
    )
    played_s: float = Field(description="Session audio heard so far (pauses excluded): here, ``start_s``.")
    total_s: float = Field(description="Played length of the whole plan (the crossfaded clip grid).")
    engine: str = Field("", description="The engine that made the clip (``builtin`` when it covered).")
    best_of: dict[str, Any] | None = Field(
        None, description="Best-of-N: every candidate's scores against the plan, and the one chosen."
    )


class PlanChanged(EventData):
    """The rest of the session was re-planned (a new target, a resumed session)."""

    type: ClassVar[EventType] = "plan_changed"
    from_index: int = Field(description="First segment of the new path.")
    plan: Plan
    reason: Literal["target", "resumed", "length"]


class BufferLevel(EventData):
    """Audio ready ahead of the play head, sent every ``playback.buffer_event_seconds``."""

    type: ClassVar[EventType] = "buffer_level"
    seconds: float
    target_seconds: float


class Bridge(EventData):
    """The next clip was late (or failed): the music was extended to cover for it."""

    type: ClassVar[EventType] = "bridge"
    index: int = Field(description="The segment that was late.")
    seconds: float
    reason: str


class Underrun(EventData):
    """The sink found the ring empty: the listener heard a gap of ``frames``."""

    type: ClassVar[EventType] = "underrun"
    frames: int


class Paused(EventData):
    type: ClassVar[EventType] = "paused"


class Resumed(EventData):
    type: ClassVar[EventType] = "resumed"


class VolumeChanged(EventData):
    type: ClassVar[EventType] = "volume"
    volume: float


class ErrorReport(EventData):
    """Something failed and playback carried on (an engine error, a write error)."""

    type: ClassVar[EventType] = "error"
    message: str
    where: str


class SessionEnded(EventData):
    """The session's last sound was heard (or it was stopped)."""

    type: ClassVar[EventType] = "session_ended"
    reason: Literal["finished", "stopped", "error"]
    played_s: float


EVENT_MODELS: tuple[type[EventData], ...] = (
    SessionStarted,
    SegmentStarted,
    PlanChanged,
    BufferLevel,
    Bridge,
    Underrun,
    Paused,
    Resumed,
    VolumeChanged,
    ErrorReport,
    SessionEnded,
)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
EVENT_MODEL: dict[str, type[EventData]] = {model.type: model for model in EVENT_MODELS}
assert set(EVENT_MODEL) == set(EVENT_TYPES), "every event type has exactly one payload model"


@dataclass(frozen=True)
class Event:
    """Something that happened in the daemon: a typed payload and the Unix time it happened."""

    data: EventData
    time: float = field(default_factory=time.time)

    @property
    def type(self) -> EventType:
        return self.data.type

    def to_dict(self) -> dict[str, Any]:
        """``{"type", "data", "time"}`` as plain JSON values (the event log's line)."""
        return {"type": self.type, "data": self.data.model_dump(mode="json"), "time": self.time}


__all__ = [
    "EVENT_MODEL",
    "EVENT_MODELS",
    "EVENT_TYPES",
    "Bridge",
    "BufferLevel",
    "ErrorReport",
    "Event",
    "EventData",
    "EventType",
    "Paused",
    "PlanChanged",
    "Resumed",
    "SegmentStarted",
    "SessionEnded",
    "SessionStarted",
    "Underrun",
    "VolumeChanged",
]
