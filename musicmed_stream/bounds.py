"""Bounded setting types and the base of every settings section: each setting's range, written once.

The configuration (``config.toml``), the control protocol's commands (and so its JSON Schema) and the
planner's :class:`~musicmed_stream.planner.types.PlanSettings` all annotate their fields with these
types, so a bound changed here changes everywhere at once. They are ``typing.Annotated`` types
carrying pydantic constraints; :func:`check` validates one value against one of them outside a
model, with the key in the error. :class:`Section` is the base of every configuration section: each
component declares its own (``ChainConfig``, ``SinkSettings``, ``ControlSettings``, ...) and
``musicmed_stream.service.config`` composes them.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from musicmed_stream.errors import ConfigError

MAX_MINUTES = 240.0
MAX_CLIPS = 2000  # a plan (sent with every status) stays a few hundred kB at most

Minutes = Annotated[
    float, Field(gt=0, le=MAX_MINUTES, allow_inf_nan=False, description="Session length in minutes.")
]
ClipSeconds = Annotated[
    float, Field(ge=0.5, le=120, allow_inf_nan=False, description="Length of one generated clip, seconds.")
]
Temperature = Annotated[
    float,
    Field(ge=0, le=5, allow_inf_nan=False, description="How often instrument and genre change (0: never)."),
]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1, description="Same seed and settings: same audio.")]
Volume = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, description="Output gain, 0..1.")]
FadeSeconds = Annotated[float, Field(ge=0, le=60, allow_inf_nan=False, description="Fade length, seconds.")]
ShortFadeSeconds = Annotated[
    float, Field(gt=0, le=30, allow_inf_nan=False, description="Crossfade of a cut, seconds.")
]
RampSeconds = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False, description="Gain ramp, seconds.")]
CrossfadeFraction = Annotated[
    float,
    Field(ge=0, le=0.5, allow_inf_nan=False, description="Clip overlap, fraction of the shorter clip."),
]
Coordinate = Annotated[
    float, Field(ge=-1, le=1, allow_inf_nan=False, description="Valence or arousal, -1..1.")
]
ClipCount = Annotated[int, Field(ge=0, le=50, description="A number of clips.")]
SegmentCount = Annotated[
    int, Field(ge=1, le=MAX_CLIPS, description="Most segments (clips) one session may have.")
]
UnitInterval = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
PathShape = Literal["line", "arc"]
OnEnd = Literal["stop", "hold"]


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def check(name: str, annotation: Any, value: Any) -> Any:
    """``value`` validated against ``annotation`` (strictly: no text or booleans read as numbers);
    ``ConfigError`` naming ``name`` otherwise."""
    if isinstance(value, bool) and annotation not in (bool,):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return _adapter(annotation).validate_python(value, strict=True)
    except ValidationError as exc:
        raise ConfigError(f"{name} = {value!r}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, as one line without pydantic's links."""
    error = exc.errors(include_url=False)[0]
    return str(error["msg"]).removeprefix("Value error, ")


def format_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad key of a validation error: ``"chain.crossfade_fraction =
    0.9: Input should be less than or equal to 0.5"``; ``prefix`` is the section's dotted name."""
    error = exc.errors(include_url=False)[0]
    key = ".".join(filter(None, [prefix, error_key(error["loc"])]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"unknown key {key}"
    if error["type"] == "missing":
        return f"{key} is required"
    if not key or isinstance(error["input"], dict):  # a rule across keys: its message names them
        return message
    shown = "'***'" if key.endswith("token") else repr(error["input"])  # a secret is never echoed
    return f"{key} = {shown}: {message}"


_TYPE_TAGS = frozenset({"float", "int", "str", "bool", "list", "dict", "none"})


def error_key(loc: tuple[int | str, ...]) -> str:
    """The dotted key of a validation error's location, without the names pydantic gives a union's
    members (``float``, ``constrained-str``, ``literal['low','high']``, a model's class name)."""

    def is_member(part: int | str) -> bool:
        return isinstance(part, str) and (
            "[" in part or part in _TYPE_TAGS or part.startswith("constrained-") or part[:1].isupper()
        )

    return ".".join(str(part) for part in loc if not is_member(part))


class Section(BaseModel):
    """Base of a settings section: frozen, unknown keys refused, values taken strictly (no text or
    booleans read as numbers). Build one from user input with :meth:`from_dict`, which raises
    :class:`ConfigError` naming the key (the constructor raises pydantic's ``ValidationError``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)
    section: ClassVar[str] = ""  # dotted name in config.toml, for messages

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Self:
        """Build from a mapping (e.g. a table of config.toml); missing keys keep their defaults."""
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as exc:
            raise ConfigError(format_error(exc, cls.section)) from None

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` (``ConfigError`` naming the key for a bad value)."""
        return self.from_dict({**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (TOML names), the inverse of :meth:`from_dict`."""
        return self.model_dump(by_alias=True)


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "MAX_CLIPS",
    "MAX_MINUTES",
    "ClipCount",
    "ClipSeconds",
    "Coordinate",
    "CrossfadeFraction",
    "FadeSeconds",
    "Minutes",
    "OnEnd",
    "PathShape",
    "RampSeconds",
    "Section",
    "Seed",
    "SegmentCount",
    "ShortFadeSeconds",
    "Temperature",
    "UnitInterval",
    "Volume",
    "check",
    "describe",
    "error_key",
    "format_error",
    "is_finite_number",
]
