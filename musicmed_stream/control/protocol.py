"""The control protocol: every websocket message, defined once as a pydantic model.

Messages are JSON objects discriminated by ``type``. A client sends commands (:data:`ClientMessage`),
each with an optional ``id`` that the server echoes in its ``ok`` or ``error`` reply; the server also
greets every connection with ``hello`` and pushes ``event`` messages to clients that subscribed.
The JSON Schema in ``protocols/`` is generated from these models (``python -m
musicmed_stream.control.schema``), so this module is the single source of truth.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from musicmed_stream.service.api import Event, EventType

PROTOCOL_VERSION = 1

EVENT_TYPES: tuple[str, ...] = get_args(EventType)

ErrorCode = Literal[
    "bad_json",
    "bad_message",
    "unknown_command",
    "unauthorized",
    "rate_limited",
    "rejected",
    "internal",
]
"""Why a command failed: ``bad_json`` (not a JSON object), ``bad_message`` (a missing field or a value
out of range), ``unknown_command`` (an unknown ``type``), ``unauthorized`` (no or wrong token),
``rate_limited`` (too many messages), ``rejected`` (the daemon refused it, e.g. an unknown emotion),
``internal`` (a bug in the daemon; the message says what)."""

MessageId = Annotated[str | int, Field(description="Chosen by the client; echoed in the reply.")]
Unit = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Command(_Message):
    id: MessageId | None = None


class _Reply(_Message):
    # Every field is always sent, so the schema of what the server sends marks them all required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


# --- client -> server -------------------------------------------------------------------------


class HelloCommand(_Command):
    """Optional client greeting; may carry the token (same as ``auth``)."""

    type: Literal["hello"]
    token: str | None = None
    client: str | None = Field(default=None, max_length=200, description="Free-form client name.")


class AuthCommand(_Command):
    """Authenticate the connection; required before any other command when the server has a token."""

    type: Literal["auth"]
    token: str = Field(max_length=4096)


class StartCommand(_Command):
    """Start a session from the listener's current state to the target state."""

    type: Literal["start"]
    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=200,
        description='Current state: emotion name, mood tag or "valence,arousal".',
    )
    to: str = Field(min_length=1, max_length=200, description="Target state, same forms as ``from``.")
    minutes: float | None = Field(default=None, gt=0, le=240, allow_inf_nan=False)
    clip_seconds: float | None = Field(default=None, gt=0, le=120, allow_inf_nan=False)
    path: Literal["line", "arc"] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, lt=2**31)


class TargetPoint(_Message):
    """A point on the circumplex."""

    valence: Unit
    arousal: Unit


class SetTargetCommand(_Command):
    """Re-target the running session; the path is re-planned from the current position."""

    type: Literal["set_target"]
    target: str | TargetPoint = Field(
        description='Emotion name, mood tag, "valence,arousal" string, or {valence, arousal}.'
    )

    @field_validator("target")
    @classmethod
    def _non_empty(cls, value: str | TargetPoint) -> str | TargetPoint:
        if isinstance(value, str) and not value.strip():
            raise ValueError("target must not be empty")
        if isinstance(value, str) and len(value) > 200:
            raise ValueError("target is longer than 200 characters")
        return value

    def target_spec(self) -> str:
        """The target as the controller takes it: the string, or ``"valence,arousal"``."""
        if isinstance(self.target, TargetPoint):
            return f"{self.target.valence!r},{self.target.arousal!r}"
        return self.target.strip()


class PauseCommand(_Command):
    type: Literal["pause"]


class ResumeCommand(_Command):
    type: Literal["resume"]


class SkipCommand(_Command):
    """Crossfade to the next segment now."""

    type: Literal["skip"]


class StopCommand(_Command):
    """End the session with a fade-out (``fade_seconds`` omitted: the daemon's default)."""

    type: Literal["stop"]
    fade_seconds: float | None = Field(default=None, ge=0, le=60, allow_inf_nan=False)


class VolumeCommand(_Command):
    type: Literal["volume"]
    volume: float = Field(ge=0, le=1, allow_inf_nan=False)


class StatusCommand(_Command):
    type: Literal["status"]


class SubscribeCommand(_Command):
    """Receive ``event`` messages of these types (omitted: all types). Adds to earlier subscriptions."""

    type: Literal["subscribe"]
    events: list[EventType] | None = None


class UnsubscribeCommand(_Command):
    """Stop receiving these event types (omitted: all)."""

    type: Literal["unsubscribe"]
    events: list[EventType] | None = None


ClientMessage = Annotated[
    HelloCommand
    | AuthCommand
    | StartCommand
    | SetTargetCommand
    | PauseCommand
    | ResumeCommand
    | SkipCommand
    | StopCommand
    | VolumeCommand
    | StatusCommand
    | SubscribeCommand
    | UnsubscribeCommand,
    Field(discriminator="type"),
]


def message_type(model: type[BaseModel]) -> str:
    """The ``type`` tag of a message model."""
    return get_args(model.model_fields["type"].annotation)[0]


CLIENT_MODELS: tuple[type[BaseModel], ...] = get_args(get_args(ClientMessage)[0])
COMMAND_TYPES: tuple[str, ...] = tuple(message_type(m) for m in CLIENT_MODELS)


# --- server -> client -------------------------------------------------------------------------


class HelloMessage(_Reply):
    """Sent by the server as soon as a connection opens."""

    type: Literal["hello"] = "hello"
    protocol_version: int = PROTOCOL_VERSION
    daemon_version: str
    auth_required: bool = Field(description="Whether the connection must still send ``auth``.")
    events: list[EventType] = Field(default_factory=lambda: list(EVENT_TYPES))
    commands: list[str] = Field(default_factory=lambda: list(COMMAND_TYPES))


class OkReply(_Reply):
    """A command succeeded; ``result`` holds what it returned (e.g. the status, the new plan)."""

    type: Literal["ok"] = "ok"
    id: MessageId | None = None
    command: str
    result: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(_Reply):
    """A command failed; the connection and the playback carry on unless the server closes it."""

    type: Literal["error"] = "error"
    id: MessageId | None = None
    code: ErrorCode
    message: str


class EventMessage(_Reply):
    """Something happened in the daemon (only sent after ``subscribe``); ``data`` per ``event`` is
    documented in ``docs/protocol.md``."""

    type: Literal["event"] = "event"
    event: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    time: float = Field(description="Unix time at which it happened.")

    @classmethod
    def from_event(cls, event: Event) -> EventMessage:
        return cls(event=event.type, data=event.data, time=event.time)


ServerMessage = Annotated[HelloMessage | OkReply | ErrorReply | EventMessage, Field(discriminator="type")]
SERVER_MODELS: tuple[type[BaseModel], ...] = get_args(get_args(ServerMessage)[0])

CLIENT_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
SERVER_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def parse_client_message(data: Any) -> ClientMessage:
    """Validate a decoded JSON value as a client command (raises ``pydantic.ValidationError``)."""
    return CLIENT_ADAPTER.validate_python(data)


def parse_server_message(data: Any) -> ServerMessage:
    """Validate a decoded JSON value as a server message (raises ``pydantic.ValidationError``)."""
    return SERVER_ADAPTER.validate_python(data)


def format_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field: ``"minutes: Input should be greater than 0"``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"][1:])  # [0] is the command's type tag
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def dump(message: BaseModel) -> str:
    """Serialize a message as compact JSON with aliases (``from``); commands leave out unset options."""
    return message.model_dump_json(by_alias=True, exclude_none=isinstance(message, _Command))


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: replace them (recursively) with ``None`` before sending."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value
