"""config.toml and its loader: defaults documented, errors name the key, overrides in order."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from musicmed_stream.bounds import Section
from musicmed_stream.chain import ChainConfig
from musicmed_stream.engines.settings import BuiltinSettings, EngineSettings, MusicgenSettings, RemoteSettings
from musicmed_stream.errors import ConfigError
from musicmed_stream.service.config import (
    Config,
    changed_keys,
    env_overrides,
    event_log_path,
    load_config,
    needs_restart,
    state_dir,
)
from musicmed_stream.serving.settings import ServeSettings

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def toml_keys(model: type[Section]) -> set[str]:
    """The keys of a settings section as config.toml spells them (``from``/``to`` for start/target),
    nested sections left out."""
    return {
        info.alias or name
        for name, info in model.model_fields.items()
        if not (isinstance(info.annotation, type) and issubclass(info.annotation, Section))
    }


def commented_keys(text: str, section: str) -> set[str]:
    """Keys of ``[section]`` that config.toml documents only in a comment (``# key = value``)."""
    body = text.split(f"[{section}]\n", 1)[1].split("\n[", 1)[0]
    comments = [line[2:] for line in body.splitlines() if line.startswith("# ") and " = " in line]
    return {line.split("=")[0].strip() for line in comments}


def test_the_repository_config_lists_every_setting_with_its_default() -> None:
    loaded = load_config(REPO_CONFIG, env={})
    assert loaded == Config()
    text = REPO_CONFIG.read_text()
    tree = tomllib.loads(text)
    assert set(tree["chain"]) == toml_keys(ChainConfig)
    for name in ("sink", "session", "playback", "control", "service"):
        assert set(tree[name]) == toml_keys(type(getattr(Config(), name))), name
    assert set(tree["engine"]) - {"builtin", "musicgen", "remote"} == toml_keys(EngineSettings)
    assert set(tree["engine"]["musicgen"]) == toml_keys(MusicgenSettings)
    assert set(tree["engine"]["remote"]) == toml_keys(RemoteSettings)
    optional = {"max_columns", "max_ongoing_requests", "autoscaling"}  # None by default: not in TOML
    assert set(tree["serve"]) == toml_keys(ServeSettings) - optional
    documented = set(tree["engine"].get("builtin", {})) | commented_keys(text, "engine.builtin")
    assert documented == toml_keys(BuiltinSettings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sink]\nspeeed = 2\n", r"unknown key sink\.speeed"),
        ("[sinks]\ntype = 'file'\n", r"unknown section \[sinks\]"),
        ("[sink]\nblock_size = 'big'\n", "sink.block_size = 'big': Input should be a valid integer"),
        ("[sink]\nblock_size = 512.5\n", "sink.block_size = 512.5: Input should be a valid integer"),
        ("[playback]\nvolume = 1.5\n", r"playback.volume = 1.5: Input should be less than or equal to 1"),
        ("[playback]\nvolume = '0.5'\n", r"playback.volume = '0.5': Input should be a valid number"),
        ("[playback]\nvolume = true\n", r"playback.volume = True: Input should be a valid number"),
        ("[session]\non_end = 'loop'\n", "session.on_end = 'loop': Input should be 'stop' or 'hold'"),
        ("[session]\nto = 'clam'\n", r"session.to = 'clam': unknown emotion 'clam': did you mean calm"),
        ("[control]\nallowed_origins = 'x'\n", "control.allowed_origins = 'x': Input should be a valid list"),
        ("[control]\nallowed_origins = [1]\n", r"control.allowed_origins.0 = 1: Input should be a valid str"),
        ("[service]\nresume = 'maybe'\n", "service.resume = 'maybe': Input should be a valid boolean"),
        ("[engine.musicgen]\ntop_k = -1\n", "engine.musicgen.top_k = -1: Input should be greater"),
        ("[engine]\nname = 'jukebox'\n", "engine.name = 'jukebox'"),
        ("sink = 3\n", r"\[sink\] must be a table"),
        ("[sink\n", "invalid TOML"),
        (
            "[session]\nexclude_genres = ['metal', 'polka']\n",
            "session.exclude_genres: 'polka' is not a known",
        ),
        (
            "[session]\nexclude_instruments = 'piano'\n",
            "session.exclude_instruments = 'piano': Input should be a valid list",
        ),
    ],
)
def test_invalid_files_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_the_clinical_palette_defaults_to_the_planners_and_can_be_emptied(tmp_path: Path) -> None:
    from musicmed_stream.planner.types import DEFAULT_EXCLUDE_GENRES

    assert load_config(env={}).session.exclude_genres == list(DEFAULT_EXCLUDE_GENRES)
    path = write(tmp_path, "[session]\nexclude_genres = []\nexclude_instruments = ['drums']\n")
    session = load_config(path, env={}).session
    assert (session.exclude_genres, session.exclude_instruments) == ([], ["drums"])
    env = {"MUSICMED_SESSION_EXCLUDE_GENRES": "metal,punk"}
    assert load_config(path, env=env).session.exclude_genres == ["metal", "punk"]


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = write(tmp_path, "[control]\ntoken = 'from-file'\nport = 9000\n[sink]\nspeed = 2.0\n")
    env = {
        "MUSICMED_CONTROL_TOKEN": "from-env",
        "MUSICMED_SINK_SPEED": "20",
        "MUSICMED_ENGINE_MUSICGEN_MODEL": "/models/small",
        "MUSICMED_CONTROL_ALLOWED_ORIGINS": "http://a:1, http://b:2",
        "MUSICMED_SERVICE_RESUME": "false",
        "MUSICMED_CHAIN_DENOISE": "false",
    }
    config = load_config(path, env=env, overrides={"control.port": 9100, "sink.type": None})
    assert config.control.token == "from-env"
    assert config.control.port == 9100
    assert config.sink.speed == 20.0
    assert config.sink.type == "sounddevice", "a flag that was not given does not override"
    assert config.engine.musicgen.model == "/models/small"
    assert config.control.allowed_origins == ["http://a:1", "http://b:2"]
    assert config.service.resume is False
    assert config.chain.denoise is False


def test_bad_environment_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"MUSICMED_SINK_BLOCK_SIZE.*sink\.block_size must be an integer"):
        load_config(env={"MUSICMED_SINK_BLOCK_SIZE": "lots"})
    with pytest.raises(ConfigError, match="MUSICMED_NOPE_X: unknown section"):
        env_overrides({"MUSICMED_NOPE_X": "1"})
    with pytest.raises(ConfigError, match=r"unknown key control\.tokn"):
        load_config(env={"MUSICMED_CONTROL_TOKN": "x"})


def test_a_token_is_required_off_loopback() -> None:
    with pytest.raises(ConfigError, match=r"control\.token is required"):
        load_config(env={}, overrides={"control.host": "0.0.0.0"})
    assert load_config(env={}, overrides={"control.host": "0.0.0.0", "control.token": "s3cret"}).control.token
    assert load_config(env={}, overrides={"control.host": "::1"}).control.host == "::1"
    assert load_config(env={}, overrides={"control.host": "0.0.0.0", "control.enabled": False})


def test_reload_reports_the_keys_that_need_a_restart(tmp_path: Path) -> None:
    old = load_config(env={})
    new = load_config(write(tmp_path, "[playback]\nvolume = 0.5\n[sink]\nblock_size = 512\n"), env={})
    changed = changed_keys(old, new)
    assert changed == ["sink.block_size", "playback.volume"]
    assert [k for k in changed if needs_restart(k)] == ["sink.block_size"]


def test_state_dir_follows_config_then_systemd_then_xdg(tmp_path: Path) -> None:
    config = load_config(env={})
    assert state_dir(config, {"STATE_DIRECTORY": "/var/lib/musicmed-stream"}) == Path(
        "/var/lib/musicmed-stream"
    )
    assert state_dir(config, {"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "musicmed-stream"
    explicit = load_config(env={}, overrides={"service.state_dir": str(tmp_path / "s")})
    assert state_dir(explicit, {"STATE_DIRECTORY": "/x"}) == tmp_path / "s"


def test_the_event_log_is_in_the_state_folder_unless_absolute_or_disabled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert event_log_path(load_config(env={}), state) == state / "events.jsonl"
    assert event_log_path(load_config(env={}), None) is None  # no state folder: nowhere to put it
    absolute = load_config(env={"MUSICMED_SERVICE_EVENT_LOG": str(tmp_path / "log.jsonl")})
    assert event_log_path(absolute, state) == tmp_path / "log.jsonl"
    assert event_log_path(load_config(env={}, overrides={"service.event_log": ""}), state) is None
    assert needs_restart("service.event_log")


# ---------------------------------------------------------------- a file that cannot be read


def unusable(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A config path of ``kind`` and the reason its error must give."""
    import os

    if kind == "a directory":
        path = tmp_path / "conf.d"
        path.mkdir()
        return path, "it is a directory"
    if kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads a file whatever its mode")
        path = write(tmp_path, "[playback]\nvolume = 0.5\n")
        path.chmod(0o000)
        return path, "Permission denied"
    if kind == "not UTF-8":
        path = tmp_path / "latin1.toml"
        path.write_bytes("[session]\n# réglages\nfrom = 'sad'\n".encode("latin-1"))
        return path, "is not UTF-8 text: byte 0xe9 on line 2"
    if kind == "a named pipe":
        path = tmp_path / "pipe.toml"
        os.mkfifo(path)
        return path, "not a regular file"
    if kind == "not TOML":
        return write(tmp_path, "[playback\nvolume = 0.5\n"), "invalid TOML"
    if kind == "nested too deeply":
        return write(tmp_path, "a = " + "[" * 100_000 + "]" * 100_000), "nested too deeply"
    raise AssertionError(kind)


UNUSABLE = ["a directory", "unreadable", "not UTF-8", "a named pipe", "not TOML", "nested too deeply"]


def test_a_config_file_this_user_may_not_read_is_a_config_error_even_for_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chmod-000 case above is skipped as root: the same error, made up, for every user."""
    import os

    path = write(tmp_path, "[playback]\nvolume = 0.5\n")
    real_open = os.open

    def refusing(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(name) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(ConfigError, match=r"config file .*config\.toml cannot be read: Permission denied$"):
        load_config(path, env={})


@pytest.mark.parametrize("kind", UNUSABLE)
def test_a_config_file_that_cannot_be_read_is_a_config_error_naming_it(tmp_path: Path, kind: str) -> None:
    path, reason = unusable(tmp_path, kind)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message and reason in message and "\n" not in message, message


@pytest.mark.parametrize("kind", UNUSABLE)
def test_serve_refuses_a_config_file_that_cannot_be_read_with_one_line_and_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    from musicmed_stream.cli.main import main

    path, reason = unusable(tmp_path, kind)
    for name in [n for n in __import__("os").environ if n.startswith("MUSICMED_")]:
        monkeypatch.delenv(name)
    assert main(["serve", "--config", str(path), "--state-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicmed-stream: error:") and err.count("\n") == 1, err
    assert str(path) in err and reason in err and "Traceback" not in err
    assert not (tmp_path / "s").exists(), "refused before anything starts"
    monkeypatch.setenv("MUSICMED_CONFIG", str(path))  # the same file named by the environment
    assert main(["serve", "--state-dir", str(tmp_path / "s")]) == 2
    assert reason in capsys.readouterr().err


@pytest.mark.parametrize("kind", UNUSABLE)
def test_a_reload_from_a_file_that_cannot_be_read_keeps_the_running_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    from musicmed_stream.service.runner import _reload

    path, reason = unusable(tmp_path, kind)
    running = load_config(env={}, overrides={"playback.volume": 0.3})
    with caplog.at_level("INFO", logger="musicmed_stream.service.runner"):
        # the daemon is not touched when the file is refused (an object that has nothing to call)
        assert _reload(object(), running, str(path), None) is running  # type: ignore[arg-type]
    lines = [r for r in caplog.records if r.name == "musicmed_stream.service.runner"]
    assert len(lines) == 1 and lines[0].levelname == "ERROR" and lines[0].exc_info is None
    message = lines[0].getMessage()
    assert "reload refused, keeping the running configuration" in message
    assert str(path) in message and reason in message and "\n" not in message
