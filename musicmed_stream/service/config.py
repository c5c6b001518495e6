"""The daemon's configuration: ``config.toml`` into one typed model, then overrides.

Each component declares its own section (:class:`~musicmed_stream.engines.settings.EngineSettings`,
:class:`~musicmed_stream.chain.ChainConfig`, :class:`~musicmed_stream.player.sinks.SinkSettings`,
:class:`~musicmed_stream.control.settings.ControlSettings`); this module adds the session, playback
and service sections and composes them into :class:`Config`. Bounds come from
:mod:`musicmed_stream.bounds`, shared with the control protocol and the planner.

Precedence, lowest first: the defaults (documented one by one in the repository's ``config.toml``),
the TOML file, environment variables ``MUSICMED_<SECTION>_<KEY>`` (e.g. ``MUSICMED_CONTROL_TOKEN``,
``MUSICMED_ENGINE_MUSICGEN_MODEL``), command-line flags. Values are taken strictly (a string is not
a number); environment variables, which are text, are parsed as their setting's type. Every problem
is a :class:`~musicmed_stream.errors.ConfigError` naming where the value came from and the key.
"""

from __future__ import annotations

import os
import stat
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator, model_validator

from musicmed_stream.bounds import (
    ClipSeconds,
    FadeSeconds,
    Minutes,
    OnEnd,
    PathShape,
    RampSeconds,
    Section,
    Seed,
    SegmentCount,
    ShortFadeSeconds,
    Temperature,
    Volume,
    format_error,
)
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.control.api import DEFAULT_PRESETS, Preset
from musicmed_stream.control.settings import ControlSettings
from musicmed_stream.engines.settings import EngineSettings
from musicmed_stream.errors import ConfigError, MusicMedError
from musicmed_stream.planner.types import DEFAULT_EXCLUDE_GENRES, DEFAULT_EXCLUDE_INSTRUMENTS
from musicmed_stream.player.sinks import SinkSettings
from musicmed_stream.render_settings import RenderSettings
from musicmed_stream.serving.settings import ServeSettings

PALETTE_KEYS = ("exclude_genres", "exclude_instruments")
TOP_LEVEL_LISTS = ("presets",)  # arrays of tables at the top of config.toml


class SessionSettings(Section):
    """``[session]``: defaults of a session request (TOML keys ``from`` and ``to``)."""

    section = "session"

    start: str = Field("sad", alias="from", min_length=1, max_length=200)
    target: str = Field("calm", alias="to", min_length=1, max_length=200)
    minutes: Minutes = 15.0
    clip_seconds: ClipSeconds = 30.0
    path: PathShape = "line"
    temperature: Temperature = 0.5
    seed: Seed = 0
    on_end: OnEnd = "stop"
    # A session of more clips is refused (a 240-min session of 1-s clips would be 19,200 of them).
    max_segments: SegmentCount = 1000
    jamendo: str = "../shared/data/mtg-jamendo"
    mapping: str = ""
    # The clinical palette (MTG-Jamendo tags never drawn; [] for none): the planner's default.
    exclude_genres: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE_GENRES))
    exclude_instruments: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE_INSTRUMENTS))

    @model_validator(mode="after")
    def _names_resolve(self) -> SessionSettings:
        """The states and the palette are checked now, not when a session first needs them."""
        from musicmed_stream.emotion import load_tag_mapping, resolve_state

        try:
            mapping = load_tag_mapping(self.mapping or None)
        except MusicMedError as exc:
            raise ValueError(f"session.mapping: {exc}") from None
        for key, spec in (("from", self.start), ("to", self.target)):
            try:
                resolve_state(spec, mapping=mapping)
            except MusicMedError as exc:
                raise ValueError(f"session.{key} = {spec!r}: {exc}") from None
        validate_palette(self)
        return self


class PlaybackSettings(Section):
    """``[playback]``: buffering, fades and the block path."""

    section = "playback"

    buffer_seconds: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] = 45.0
    ring_seconds: Annotated[float, Field(ge=0.02, le=5, allow_inf_nan=False)] = 2.0
    respond_seconds: Annotated[float, Field(ge=0.02, le=5, allow_inf_nan=False)] = 0.1
    volume: Volume = 0.8
    max_volume: Volume = 1.0  # no client can set more (a care limit)
    volume_ramp_seconds: RampSeconds = 0.3
    pause_ramp_seconds: RampSeconds = 0.1
    fade_seconds: FadeSeconds = 3.0
    retarget_fade_seconds: ShortFadeSeconds = 1.5
    skip_fade_seconds: ShortFadeSeconds = 1.5
    bridge: Literal["loop", "builtin"] = "loop"
    bridge_seconds: Annotated[float, Field(ge=0.5, le=60, allow_inf_nan=False)] = 6.0
    bridge_fade_seconds: Annotated[float, Field(ge=0.01, le=10, allow_inf_nan=False)] = 1.0
    buffer_event_seconds: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] = 5.0


class ServiceSettings(Section):
    """``[service]``: process-level settings."""

    section = "service"

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: str = ""
    resume: bool = True
    warmup: bool = True
    event_log: str = "events.jsonl"

    @field_validator("event_log")
    @classmethod
    def _jsonl(cls, value: str) -> str:
        if value and Path(value).name in ("", ".", ".."):
            raise ValueError("must name a file")
        return value


class Config(Section):
    """The whole configuration."""

    engine: EngineSettings = Field(default_factory=EngineSettings)
    chain: ChainConfig = Field(default_factory=ChainConfig)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    playback: PlaybackSettings = Field(default_factory=PlaybackSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)  # generate-server (docs/serving.md)
    render: RenderSettings = Field(default_factory=RenderSettings)  # musicmed-stream render
    # ``[[presets]]`` tables: one-tap sessions offered to the companions
    presets: list[Preset] = Field(default_factory=lambda: list(DEFAULT_PRESETS), max_length=20)

    @model_validator(mode="after")
    def _presets_resolve(self) -> Config:
        """Every preset's states resolve with the session's mapping, now rather than at the tap."""
        from musicmed_stream.emotion import load_tag_mapping, resolve_state

        names = [preset.name for preset in self.presets]
        if len(set(names)) != len(names):
            raise ValueError(f"presets: two presets share a name ({', '.join(names)})")
        mapping = load_tag_mapping(self.session.mapping or None)
        for n, preset in enumerate(self.presets):
            for key, spec in (("from", preset.from_), ("to", preset.to)):
                if spec is None:
                    continue
                try:
                    resolve_state(spec, mapping=mapping)
                except MusicMedError as exc:
                    raise ValueError(f"presets[{n}] {preset.name!r}: {key} = {spec!r}: {exc}") from None
        return self

    def replace(self, **sections: Any) -> Config:
        """A copy with some sections replaced by other section objects."""
        return Config.model_validate({**dict(self), **sections})


# Keys whose change only takes effect after a restart (SIGHUP reports them).
RESTART_KEYS = (
    "engine",
    "serve",
    "render",
    "chain",
    "sink",
    "control",
    "service.state_dir",
    "service.event_log",
    "playback.ring_seconds",
)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load the configuration.

    Parameters
    ----------
    path : path, optional
        TOML file; ``None`` for the built-in defaults.
    env : mapping, optional
        Environment to read ``MUSICMED_*`` overrides from (default ``os.environ``).
    overrides : mapping, optional
        ``"section.key" -> value`` (e.g. from command-line flags), applied last; ``None`` values
        are ignored (a flag that was not given).

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML, unknown key, wrong type or out-of-range value, an emotion name
        that does not resolve: the message names the source and the key.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        tree = _read_toml(path)
    flat = _flatten(tree, source)
    for key, text in env_overrides(os.environ if env is None else env).items():
        where = f"environment MUSICMED_{key.replace('.', '_').upper()}"
        flat[key] = (_from_text(key, text, where), where)
    for key, value in (overrides or {}).items():
        if value is not None:
            _annotation(key, "command line")
            flat[key] = (value, "command line")
    try:
        return Config.model_validate(_nest(flat))
    except ValidationError as exc:
        raise ConfigError(f"{_source_of(exc, flat)}: {format_error(exc)}") from None


MAX_CONFIG_BYTES = 1 << 20  # config.toml, every setting documented, is some 20 kB


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML file at ``path``; ``ConfigError`` naming the file and why it cannot be used (a
    folder, a pipe or a device, no permission, not UTF-8, not TOML), never anything else."""
    try:
        # non-blocking: a named pipe with no writer is refused below instead of waiting forever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"config file {path} cannot be read: {reason}") from exc
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise ConfigError(f"config file {path} cannot be read: it is a directory")
        if not stat.S_ISREG(kind):
            raise ConfigError(f"config file {path} cannot be read: not a regular file")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES and (chunk := os.read(fd, 1 << 16)):
            data += chunk
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} cannot be read: larger than {MAX_CONFIG_BYTES >> 20} MB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # arrays nested thousands deep
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``MUSICMED_<SECTION>_<KEY>`` variables as ``"section.key" -> text``."""
    sections = sorted(_sections(), key=len, reverse=True)  # engine.musicgen before engine
    result = {}
    for name, value in env.items():
        # MUSICMED_CONFIG names the file; MUSICMED_CTL_* belong to the ctl client
        if not name.startswith("MUSICMED_") or name == "MUSICMED_CONFIG" or name.startswith("MUSICMED_CTL_"):
            continue
        rest = name[len("MUSICMED_") :].lower()
        for section in sections:
            prefix = section.replace(".", "_") + "_"
            if rest.startswith(prefix):
                result[f"{section}.{rest[len(prefix) :]}"] = value
                break
        else:
            raise ConfigError(f"environment variable {name}: unknown section")
    return result


def _sections() -> dict[str, type[BaseModel]]:
    """Dotted section name -> its model, nested tables included (``engine.musicgen``)."""
    found: dict[str, type[BaseModel]] = {}

    def walk(prefix: str, model: type[BaseModel]) -> None:
        for name, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                dotted = f"{prefix}.{name}" if prefix else name
                found[dotted] = kind
                walk(dotted, kind)

    walk("", Config)
    return found


def _annotation(dotted: str, source: str) -> Any:
    """The type of the setting ``section.key``; ``ConfigError`` for an unknown key."""
    section, _, key = dotted.rpartition(".")
    model = _sections().get(section)
    if model is None:
        raise ConfigError(f"{source}: unknown key {dotted}")
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    fields.update(model.model_fields)
    if key not in fields or key in _sections_of(model):
        raise ConfigError(f"{source}: unknown key {dotted}")
    info = fields[key]
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


def _sections_of(model: type[BaseModel]) -> set[str]:
    return {
        name
        for name, info in model.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    }


def _from_text(dotted: str, text: str, source: str) -> Any:
    """An environment variable's text as the type of its setting (lists: comma-separated)."""
    annotation = _annotation(dotted, source)
    base = (typing.get_origin(annotation) is Annotated and typing.get_args(annotation)[0]) or annotation
    if typing.get_origin(base) is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    options = typing.get_args(base) if typing.get_origin(base) in (typing.Union, type(int | str)) else (base,)
    for option in sorted(options, key=lambda o: o is str or typing.get_origin(o) is Literal):
        try:
            return TypeAdapter(option).validate_strings(text)
        except ValidationError:
            continue
    kinds = {int: "an integer", float: "a number", bool: "true or false"}
    raise ConfigError(f"{source}: {dotted} must be {kinds.get(base, 'valid')}, got {text!r}")


def _flatten(tree: dict[str, Any], source: str) -> dict[str, tuple[Any, str]]:
    """TOML tables as ``"section.key" -> (value, source)``."""
    sections = _sections()
    flat: dict[str, tuple[Any, str]] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if dotted in TOP_LEVEL_LISTS:
                flat[dotted] = (value, source)
            elif dotted in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: [{dotted}] must be a table")
                walk(dotted, value)
            elif not prefix:
                raise ConfigError(f"{source}: unknown section [{key}]")
            else:
                flat[dotted] = (value, source)

    walk("", tree)
    return flat


def _nest(flat: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, (value, _) in flat.items():
        *parents, key = dotted.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    return tree


def _source_of(exc: ValidationError, flat: dict[str, tuple[Any, str]]) -> str:
    """Where the value behind the first error came from: the longest key it names (a rule across
    keys names its key at the start of its message: ``presets[1] ...``)."""
    error = exc.errors(include_url=False)[0]
    loc = [str(x) for x in error["loc"]] or [str(error["msg"]).removeprefix("Value error, ").split("[")[0]]
    for size in range(len(loc), 0, -1):
        dotted = ".".join(loc[:size])
        if dotted in flat:
            return flat[dotted][1]
        inside = [src for key, (_, src) in flat.items() if key.startswith(dotted + ".")]
        if inside:
            return inside[-1]
    return "defaults"


def validate_palette(session: SessionSettings) -> None:
    """Every name of ``session.exclude_genres``/``exclude_instruments`` is a known tag: of
    MTG-Jamendo, or else of the ``session.jamendo`` folder (read only for a name it alone may know)."""
    from musicmed_stream.planner.statistics import exclusion_set, load_jamendo_statistics

    for key, kind in zip(PALETTE_KEYS, ("genre", "instrument"), strict=True):
        names = getattr(session, key)
        name = f"session.{key}"
        try:
            exclusion_set(names, kind, name)
        except ConfigError as unknown:
            folder = Path(session.jamendo).expanduser() if session.jamendo else None
            if folder is None or not folder.is_dir():
                raise ValueError(str(unknown)) from None
            try:
                statistics = load_jamendo_statistics(folder)
                exclusion_set(names, kind, name, statistics)
            except ConfigError:
                raise ValueError(str(unknown)) from None


def state_dir(config: Config, env: Mapping[str, str] | None = None) -> Path:
    """The state folder: ``service.state_dir``, systemd's ``$STATE_DIRECTORY``, or the XDG default."""
    env = os.environ if env is None else env
    if config.service.state_dir:
        return Path(config.service.state_dir).expanduser()
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "musicmed-stream"


def event_log_path(config: Config, state: Path | None) -> Path | None:
    """The event log: ``service.event_log`` (relative to the state folder ``state``); ``None`` when
    it is ``""``, or relative with no state folder."""
    name = config.service.event_log
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    return None if state is None else state / path


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted names of the settings that differ between two configurations."""

    def walk(prefix: str, a: Any, b: Any) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [k for key in a for k in walk(f"{prefix}.{key}" if prefix else key, a[key], b.get(key))]
        return [] if a == b else [prefix]

    return walk("", old.model_dump(), new.model_dump())


def needs_restart(key: str) -> bool:
    """Whether a changed setting only applies after a restart."""
    return any(key == k or key.startswith(k + ".") for k in RESTART_KEYS)


__all__ = [
    "Config",
    "PlaybackSettings",
    "ServiceSettings",
    "SessionSettings",
    "changed_keys",
    "env_overrides",
    "event_log_path",
    "load_config",
    "needs_restart",
    "state_dir",
    "validate_palette",
]
