"""The daemon's configuration: ``config.toml`` into typed dataclasses, then overrides.

Precedence, lowest first: built-in defaults (the dataclass defaults, documented one by one in the
repository's ``config.toml``), the TOML file, environment variables
``MUSICMED_<SECTION>_<KEY>`` (e.g. ``MUSICMED_CONTROL_TOKEN``, ``MUSICMED_ENGINE_MUSICGEN_MODEL``),
command-line flags. Every problem is a :class:`~musicmed_stream.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from musicmed_stream.errors import ConfigError
from musicmed_stream.planner.types import DEFAULT_EXCLUDE_GENRES, DEFAULT_EXCLUDE_INSTRUMENTS
from musicmed_stream.player.sinks import SinkSettings


@dataclass(frozen=True)
class MusicgenSettings:
    """``[engine.musicgen]``: keyword arguments of the MusicGen engine."""

    model: str = "facebook/musicgen-small"
    adapter: str = ""
    device: str = "auto"
    dtype: str = "auto"
    top_k: int = 250
    guidance_scale: float = 3.0
    temperature: float = 1.0
    tail_seconds: float = 10.0
    stream_chunk_seconds: float = 2.0
    allow_download: bool = False
    require_gpu: bool = False
    merge_adapter: bool = True
    decode_impl: Literal["auto", "hf", "static"] = "auto"
    cuda_graph: bool = True
    compile: bool = False

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of the MusicGen engine (an empty adapter means none)."""
        options = dataclasses.asdict(self)
        options["adapter"] = self.adapter or None
        return options


@dataclass(frozen=True)
class EngineSettings:
    """``[engine]``: which engine, and the options of each."""

    name: Literal["auto", "builtin", "musicgen"] = "auto"
    builtin: dict[str, Any] = field(default_factory=dict)
    musicgen: MusicgenSettings = field(default_factory=MusicgenSettings)


@dataclass(frozen=True)
class SessionSettings:
    """``[session]``: defaults of a session request (TOML keys ``from`` and ``to``)."""

    start: str = "sad"
    target: str = "calm"
    minutes: float = 15.0
    clip_seconds: float = 30.0
    path: Literal["line", "arc"] = "line"
    temperature: float = 0.5
    seed: int = 0
    on_end: Literal["stop", "hold"] = "stop"
    jamendo: str = "../shared/data/mtg-jamendo"
    mapping: str = ""
    # The clinical palette (MTG-Jamendo tags never drawn; [] for none): the planner's default.
    exclude_genres: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE_GENRES))
    exclude_instruments: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE_INSTRUMENTS))


@dataclass(frozen=True)
class PlaybackSettings:
    """``[playback]``: buffering, fades and the block path."""

    buffer_seconds: float = 45.0
    ring_seconds: float = 1.0
    volume: float = 0.8
    volume_ramp_seconds: float = 0.3
    pause_ramp_seconds: float = 0.1
    fade_seconds: float = 3.0
    retarget_fade_seconds: float = 1.5
    skip_fade_seconds: float = 1.5
    bridge: Literal["loop", "builtin"] = "loop"
    bridge_seconds: float = 6.0
    bridge_fade_seconds: float = 1.0
    buffer_event_seconds: float = 5.0


@dataclass(frozen=True)
class ControlSettings:
    """``[control]``: the websocket control channel."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    max_message_bytes: int = 65536
    rate_limit_per_second: float = 20.0


@dataclass(frozen=True)
class ServiceSettings:
    """``[service]``: process-level settings."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: str = ""
    resume: bool = True
    warmup: bool = True
    event_log: str = "events.jsonl"


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    chain: dict[str, Any] = field(default_factory=dict)
    sink: SinkSettings = field(default_factory=SinkSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    playback: PlaybackSettings = field(default_factory=PlaybackSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)


# TOML keys that are Python keywords.
ALIASES = {("session", "from"): "start", ("session", "to"): "target"}
# Inclusive numeric ranges; ``None`` leaves a side open.
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("engine.musicgen", "top_k"): (0, None),
    ("engine.musicgen", "stream_chunk_seconds"): (0.1, 60),
    ("engine.musicgen", "guidance_scale"): (0, None),
    ("engine.musicgen", "temperature"): (0, None),
    ("engine.musicgen", "tail_seconds"): (0, 30),
    ("sink", "sample_rate"): (8000, 384000),
    ("sink", "channels"): (1, 2),
    ("sink", "block_size"): (16, 65536),
    ("sink", "speed"): (0.01, 1000),
    ("session", "minutes"): (0.1, 240),
    ("session", "clip_seconds"): (1, 120),
    ("session", "temperature"): (0, None),
    ("session", "seed"): (0, 2**31 - 1),
    ("playback", "buffer_seconds"): (0, 600),
    ("playback", "ring_seconds"): (0.02, 5),
    ("playback", "volume"): (0, 1),
    ("playback", "volume_ramp_seconds"): (0, 10),
    ("playback", "pause_ramp_seconds"): (0, 10),
    ("playback", "fade_seconds"): (0, 60),
    ("playback", "retarget_fade_seconds"): (0.01, 30),
    ("playback", "skip_fade_seconds"): (0.01, 30),
    ("playback", "bridge_seconds"): (0.5, 60),
    ("playback", "bridge_fade_seconds"): (0.01, 10),
    ("playback", "buffer_event_seconds"): (0.1, 3600),
    ("control", "port"): (0, 65535),
    ("control", "max_message_bytes"): (64, 2**24),
    ("control", "rate_limit_per_second"): (0.1, 10000),
}
# Keys whose change only takes effect after a restart (SIGHUP reports them).
RESTART_KEYS = (
    "engine",
    "chain",
    "sink",
    "control",
    "service.state_dir",
    "service.event_log",
    "playback.ring_seconds",
)


def _section_types() -> dict[str, type]:
    """Dotted section name -> its dataclass (``dict`` for free-form sections)."""
    return {
        "engine": EngineSettings,
        "engine.builtin": dict,
        "engine.musicgen": MusicgenSettings,
        "chain": dict,
        "sink": SinkSettings,
        "session": SessionSettings,
        "playback": PlaybackSettings,
        "control": ControlSettings,
        "service": ServiceSettings,
    }


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
        ``"section.key" -> value`` (e.g. from command-line flags), applied last.

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML, unknown key, wrong type or out-of-range value.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                tree = tomllib.load(handle)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    flat = _flatten(tree, source)
    for key, value in env_overrides(os.environ if env is None else env).items():
        flat[key] = (value, f"environment MUSICMED_{key.replace('.', '_').upper()}")
    for key, value in (overrides or {}).items():
        if value is not None:
            flat[key] = (value, "command line")
    return _build(flat)


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``MUSICMED_<SECTION>_<KEY>`` variables as ``"section.key" -> text``."""
    sections = sorted(_section_types(), key=len, reverse=True)  # engine.musicgen before engine
    result = {}
    for name, value in env.items():
        if not name.startswith("MUSICMED_") or name == "MUSICMED_CONFIG":
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


def _flatten(tree: dict[str, Any], source: str) -> dict[str, tuple[Any, str]]:
    sections = _section_types()
    flat: dict[str, tuple[Any, str]] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if dotted in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: [{dotted}] must be a table")
                if sections[dotted] is dict:
                    for sub, item in value.items():
                        flat[f"{dotted}.{sub}"] = (item, source)
                else:
                    walk(dotted, value)
            elif not prefix:
                raise ConfigError(f"{source}: unknown section [{key}]")
            else:
                flat[dotted] = (value, source)

    walk("", tree)
    return flat


def _build(flat: dict[str, tuple[Any, str]]) -> Config:
    sections = _section_types()
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for dotted, (value, source) in flat.items():
        section, _, key = dotted.rpartition(".")
        if section not in sections:
            raise ConfigError(f"{source}: unknown key {dotted}")
        values[section][ALIASES.get((section, key), key)] = _check(section, key, value, source)
    musicgen = MusicgenSettings(**values["engine.musicgen"])
    engine = EngineSettings(**values["engine"], builtin=values["engine.builtin"], musicgen=musicgen)
    config = Config(
        engine=engine,
        chain=values["chain"],
        sink=SinkSettings(**values["sink"]),
        session=SessionSettings(**values["session"]),
        playback=PlaybackSettings(**values["playback"]),
        control=ControlSettings(**values["control"]),
        service=ServiceSettings(**values["service"]),
    )
    validate(config)
    validate_palette(
        config.session, {k: flat.get(f"session.{k}", (None, "defaults"))[1] for k in PALETTE_KEYS}
    )
    return config


def _check(section: str, key: str, value: Any, source: str) -> Any:
    """Convert and validate one value against its dataclass field."""
    cls = _section_types()[section]
    name = f"{section}.{key}"
    if cls is dict:
        return _parse_free(value) if isinstance(value, str) and source.startswith("environment") else value
    fields = {f.name: f for f in dataclasses.fields(cls)}
    attr = ALIASES.get((section, key), key)
    if attr not in fields or attr in ("builtin", "musicgen"):
        raise ConfigError(f"{source}: unknown key {name}")
    hint = typing.get_type_hints(cls)[attr]
    value = _coerce(value, hint, name, source, from_text=source.startswith("environment"))
    low, high = RANGES.get((section, key), (None, None))
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and ((low is not None and value < low) or (high is not None and value > high)):
        bounds = f"{'' if low is None else low}..{'' if high is None else high}"
        raise ConfigError(f"{source}: {name} = {value} is out of range ({bounds})")
    return value


def _coerce(value: Any, hint: Any, name: str, source: str, from_text: bool = False) -> Any:
    """``value`` as the type ``hint``; with ``from_text`` (environment variables) strings are parsed."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{source}: {name} = {value!r}; choose one of {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):  # str | float (sink.latency)
        for option in typing.get_args(hint):
            if option is not str:
                try:
                    return _coerce(value, option, name, source, from_text)
                except ConfigError:
                    pass
        return _coerce(value, str, name, source, from_text)
    if origin is list:
        if isinstance(value, str) and from_text:
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{source}: {name} must be a list of strings")
        return value
    if hint is bool:
        words = ("1", "true", "yes", "on", "0", "false", "no", "off")
        if from_text and isinstance(value, str) and value.lower() in words:
            return value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, str) and from_text:
            try:
                value = hint(value)
            except ValueError:
                raise ConfigError(f"{source}: {name} must be a number, got {value!r}") from None
        wrong = isinstance(value, bool) or not isinstance(value, int | float)
        if wrong or (hint is int and isinstance(value, float)):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{source}: {name} must be {kind}, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {name} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {name} has unsupported type")  # pragma: no cover - a bug in this module


def _parse_free(text: str) -> Any:
    """A value of a free-form section from the environment: TOML scalar if it parses, else text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(config: Config) -> None:
    """Cross-field checks (the single-field ones happen while loading)."""
    if config.control.enabled and not is_loopback(config.control.host) and not config.control.token:
        raise ConfigError(
            f"control.token is required when control.host ({config.control.host}) is not loopback; "
            "set it or MUSICMED_CONTROL_TOKEN"
        )
    uses_file = config.sink.type == "file" or (
        config.sink.type == "sounddevice" and config.sink.fallback == "file"
    )
    if uses_file and Path(config.sink.file).suffix.lower() not in (".wav", ".flac"):
        raise ConfigError(f"sink.file must end in .wav or .flac, got {config.sink.file}")
    if config.sink.type not in ("sounddevice", "file", "null"):
        raise ConfigError(f"sink.type = {config.sink.type!r}; choose one of sounddevice, file, null")


PALETTE_KEYS = ("exclude_genres", "exclude_instruments")


def validate_palette(session: SessionSettings, sources: Mapping[str, str] | None = None) -> None:
    """Every name of ``session.exclude_genres``/``exclude_instruments`` is a known tag: of
    MTG-Jamendo, or else of the ``session.jamendo`` folder (read only for a name it alone may know).
    ``sources``: where each key was set, for the message."""
    from musicmed_stream.planner.statistics import exclusion_set, load_jamendo_statistics

    for key, kind in zip(PALETTE_KEYS, ("genre", "instrument"), strict=True):
        names = getattr(session, key)
        name = f"{(sources or {}).get(key, 'config')}: session.{key}"
        try:
            exclusion_set(names, kind, name)
        except ConfigError as unknown:
            folder = Path(session.jamendo).expanduser() if session.jamendo else None
            if folder is None or not folder.is_dir():
                raise
            try:
                statistics = load_jamendo_statistics(folder)
            except ConfigError:
                raise unknown from None
            exclusion_set(names, kind, name, statistics)


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
    changed = []
    for section in dataclasses.fields(Config):
        a, b = getattr(old, section.name), getattr(new, section.name)
        if dataclasses.is_dataclass(a):
            names = [f.name for f in dataclasses.fields(a)]
            changed += [f"{section.name}.{n}" for n in names if getattr(a, n) != getattr(b, n)]
        elif a != b:
            changed.append(section.name)
    return changed


def needs_restart(key: str) -> bool:
    """Whether a changed setting only applies after a restart."""
    return any(key == k or key.startswith(k + ".") for k in RESTART_KEYS)
