"""The control protocol: every websocket message, defined once as a pydantic model.

Messages are JSON objects discriminated by ``type``. A client sends commands (:data:`ClientMessage`),
each with an optional ``id`` that the server echoes in its ``ok`` or ``error`` reply; the server also
greets every connection with ``hello`` and pushes ``event`` messages to clients that subscribed.
The JSON Schema in ``protocols/`` is generated from these models (``python -m
musicmed_stream.control.schema``), so this module is the single source of truth.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator

from musicmed_stream.bounds import (
    ClipSeconds,
    Coordinate,
    FadeSeconds,
    Minutes,
    PathShape,
    Seed,
    Temperature,
    Volume,
    error_key,
)
from musicmed_stream.control.api import Preset
from musicmed_stream.control.events import EVENT_MODELS, EVENT_TYPES, Event, EventData, EventType
from musicmed_stream.emotion.point import VA

PROTOCOL_VERSION = 1

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

MessageId = Annotated[
    Annotated[str, Field(max_length=200)] | Annotated[int, Field(ge=-(2**53), le=2**53)],
    Field(description="Chosen by the client; echoed in the reply."),
]
StateName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description='Emotion name, mood tag or "valence,arousal" text.',
    ),
]


class _Message(BaseModel):
    # Strict, as the schema says: no text or booleans read as numbers, no floats as integers.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


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


class TargetPoint(_Message):
    """A point on the circumplex."""

    valence: Coordinate
    arousal: Coordinate

    def va(self) -> VA:
        return VA(self.valence, self.arousal)


def _state(value: str | TargetPoint) -> str | VA:
    """A state as the controller takes it: a name (stripped) or a point, never text re-parsed."""
    return value.va() if isinstance(value, TargetPoint) else value.strip()


def _not_blank(value: str | TargetPoint | None) -> str | TargetPoint | None:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


class StartCommand(_Command):
    """Start a session from the listener's current state to the target state."""

    type: Literal["start"]
    from_: StateName | TargetPoint | None = Field(
        default=None,
        alias="from",
        description="Current state, or {valence, arousal}; omitted: the listener's check-in of the "
        "last half hour, else the daemon's [session] from.",
    )
    to: StateName | TargetPoint = Field(description="Target state, same forms as ``from``.")
    minutes: Minutes | None = None
    clip_seconds: ClipSeconds | None = None
    path: PathShape | None = None
    temperature: Temperature | None = None
    seed: Seed | None = None
    replace: bool = Field(
        default=False, description="Start even though a session plays (else refused: `rejected`)."
    )

    _blank = field_validator("from_", "to")(_not_blank)

    def start_state(self) -> str | VA | None:
        return None if self.from_ is None else _state(self.from_)

    def target_state(self) -> str | VA:
        return _state(self.to)


class SetTargetCommand(_Command):
    """Re-target the running session; the path is re-planned from the current position."""

    type: Literal["set_target"]
    target: StateName | TargetPoint = Field(description="Target state, or {valence, arousal}.")

    _blank = field_validator("target")(_not_blank)

    def target_state(self) -> str | VA:
        return _state(self.target)


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
    fade_seconds: FadeSeconds | None = None


class VolumeCommand(_Command):
    type: Literal["volume"]
    volume: Volume


class StatusCommand(_Command):
    """Where the daemon stands; the running session's plan (every segment) only with ``plan``."""

    type: Literal["status"]
    plan: bool = False


class ExtendCommand(_Command):
    """Make the running session longer (or, with negative minutes, shorter), re-planned from where
    the listener is."""

    type: Literal["extend"]
    minutes: Annotated[float, Field(ge=-240, le=240, allow_inf_nan=False)]


class SleepTimerCommand(_Command):
    """Fade the session out after this many more minutes of it (``null``: no timer)."""

    type: Literal["sleep_timer"]
    minutes: Minutes | None


class CheckinCommand(_Command):
    """How the listener feels, tapped on the circle, before or after a session (stored in the
    listening history with the session)."""

    type: Literal["checkin"]
    when: Literal["before", "after"]
    valence: Coordinate
    arousal: Coordinate


class HistoryCommand(_Command):
    """The latest sessions of the listening history, with their check-ins."""

    type: Literal["history"]
    limit: Annotated[int, Field(ge=1, le=500)] = 20


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
    | ExtendCommand
    | SleepTimerCommand
    | CheckinCommand
    | HistoryCommand
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
    presets: list[Preset] = Field(default_factory=list, description="One-tap sessions the daemon offers.")


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


class BaseEventMessage(_Reply):
    """Base of the ``event`` messages (one per event type, made by :func:`_event_message`)."""

    type: Literal["event"] = "event"
    event: EventType
    data: EventData
    time: float


def _event_message(model: type[EventData]) -> type[BaseEventMessage]:
    """The ``event`` message that carries one payload model (``SegmentStartedEvent`` ...)."""
    return create_model(
        f"{model.__name__}Event",
        __base__=BaseEventMessage,
        __doc__=f"Event ``{model.type}`` (only sent after ``subscribe``): {model.__doc__ or ''}".strip(),
        type=(Literal["event"], "event"),
        event=(Literal[model.type], model.type),  # type: ignore[valid-type]
        data=(model, ...),
        time=(float, Field(description="Unix time at which it happened.")),
    )


EVENT_MESSAGES: tuple[type[BaseEventMessage], ...] = tuple(_event_message(m) for m in EVENT_MODELS)
EVENT_MESSAGE: dict[str, type[BaseEventMessage]] = {
    m.type: msg for m, msg in zip(EVENT_MODELS, EVENT_MESSAGES, strict=True)
}
# The union of the event messages, discriminated by ``event`` inside the ``type == "event"`` branch.
EventMessage = Annotated[Union[EVENT_MESSAGES], Field(discriminator="event")]  # noqa: UP007 - built at run time


def event_type(model: type[BaseModel]) -> str:
    """The ``event`` tag of an event message model."""
    return get_args(model.model_fields["event"].annotation)[0]


def event_message(event: Event) -> BaseEventMessage:
    """The ``event`` message of a daemon event."""
    return EVENT_MESSAGE[event.type](data=event.data, time=event.time)


ServerMessage = Annotated[HelloMessage | OkReply | ErrorReply | EventMessage, Field(discriminator="type")]
SERVER_MODELS: tuple[type[BaseModel], ...] = (HelloMessage, OkReply, ErrorReply, *EVENT_MESSAGES)

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
        loc = error_key(err["loc"][1:])  # [0] is the command's type tag
        message = str(err["msg"]).removeprefix("Value error, ")
        part = f"{loc}: {message}" if loc else message
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)


def dump(message: BaseModel) -> str:
    """Serialize a message as compact JSON with aliases (``from``); commands leave out unset options."""
    command = isinstance(message, _Command)
    return message.model_dump_json(by_alias=True, exclude_none=command, exclude_unset=command)
