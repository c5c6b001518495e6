"""The session record: saved atomically off the audio path, read back, failures said once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from musicmed_stream.engines.base import Continuation
from musicmed_stream.planner import PlanSettings, plan_session
from musicmed_stream.service.state import KEEP_BAD, STATE_FILE, SessionRecord, StateStore, _PlanSettings

LOGGER = "musicmed_stream.service.state"


def record(index: int = 3) -> SessionRecord:
    plan = plan_session("sad", "calm", PlanSettings(minutes=1, clip_seconds=10))
    tail = np.random.default_rng(index).uniform(-0.5, 0.5, (4410, 2)).astype(np.float32)
    continuation = Continuation(tail=tail, sample_rate=44100, state={"key": "F", "tempo": np.float64(61.5)})
    return SessionRecord("abc", plan, index, seed=7, on_end="stop", played_s=12.5, continuation=continuation)


def test_a_saved_record_reads_back_whole(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(record(2))
    store.save(record(3))  # the newer one wins; older tails are removed
    store.close()
    loaded = StateStore(tmp_path).load()
    assert loaded is not None
    assert (loaded.session_id, loaded.index, loaded.seed, loaded.played_s) == ("abc", 3, 7, 12.5)
    assert loaded.plan == record().plan
    np.testing.assert_array_equal(loaded.continuation.tail, record(3).continuation.tail)
    assert loaded.continuation.state == {"key": "F", "tempo": 61.5}
    assert sorted(p.name for p in tmp_path.glob("tail-*.wav")) == ["tail-00003.wav"]


def test_the_plan_is_written_once_per_plan_and_the_record_per_segment_stays_small(tmp_path: Path) -> None:
    first = record(2)
    store = StateStore(tmp_path)
    store.write(first)
    (plan_file,) = tmp_path.glob("plan-*.json")
    written = plan_file.stat().st_mtime_ns, plan_file.stat().st_ino
    for index in (3, 4, 5):  # the next segments of the same plan: only session.json and the tail
        store.write(dataclasses.replace(first, index=index))
    assert (plan_file.stat().st_mtime_ns, plan_file.stat().st_ino) == written
    size = (tmp_path / STATE_FILE).stat().st_size
    assert size < plan_file.stat().st_size / 4, (size, plan_file.stat().st_size)
    replanned = dataclasses.replace(first.plan, target_label="happy")  # a re-plan: a new plan file
    store.write(dataclasses.replace(first, plan=replanned, index=6))
    store.close()
    assert [p.name for p in tmp_path.glob("plan-*.json")] != [plan_file.name]
    assert len(list(tmp_path.glob("plan-*.json"))) == 1
    loaded = StateStore(tmp_path).load()
    assert loaded is not None and loaded.plan == replanned and loaded.index == 6
    StateStore(tmp_path).remove()
    assert not list(tmp_path.glob("plan-*.json")) and not (tmp_path / STATE_FILE).exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda folder, data: (folder / data["plan_file"]).unlink(), "cannot be read"),
        (lambda folder, data: (folder / data["plan_file"]).write_text("{"), "is not JSON"),
        (lambda folder, data: data.update(plan_file="../plan-0123456789abcdef.json"), "not a plan file"),
        (lambda folder, data: data.update(plan_file=7), "not a plan file"),
    ],
)
def test_a_record_whose_plan_file_is_missing_damaged_or_elsewhere_is_refused(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]], change: Any, reason: str
) -> None:
    store = StateStore(tmp_path)
    store.write(record())
    store.close()
    data = json.loads((tmp_path / STATE_FILE).read_text())
    change(tmp_path, data)
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    assert StateStore(tmp_path).load() is None
    assert_refused(tmp_path, errors(), reason)


def test_a_cleared_or_damaged_record_is_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    store.save(record())
    store.clear()
    store.close()
    assert StateStore(tmp_path).load() is None and not list(tmp_path.iterdir())
    (tmp_path / STATE_FILE).write_text('{"plan": ')
    with caplog.at_level(logging.ERROR):
        assert StateStore(tmp_path).load() is None
    assert "not resuming the saved session" in caplog.text and "not JSON" in caplog.text


def test_a_failing_disk_is_logged_once_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state"
    folder.write_text("a file where the folder should be")  # every save fails
    store = StateStore(folder)
    with caplog.at_level(logging.INFO, logger="musicmed_stream.service.state"):
        for index in range(5):
            store.save(record(index))
            store.flush()
        failures = [r for r in caplog.records if r.levelno == logging.ERROR]
        folder.unlink()  # room again
        store.save(record(5))
        store.flush()
        store.close()
    assert len(failures) == 1 and str(folder) in failures[0].getMessage(), "five failures, one line"
    assert [r.getMessage() for r in caplog.records if "saved again" in r.getMessage()]
    assert StateStore(folder).load().index == 5


# ---------------------------------------------------------------- a record that is not resumed


def saved(folder: Path, rec: SessionRecord | None = None) -> dict[str, Any]:
    """Save ``rec`` (default: :func:`record`) in ``folder``; its JSON as a dict, the plan inline
    (the version-2 form, which is read as well)."""
    store = StateStore(folder)
    store.write(rec or record())
    store.close()
    data = json.loads((folder / STATE_FILE).read_text())
    data["plan"] = json.loads((folder / data.pop("plan_file")).read_text())
    return data | {"version": 2}


def rewrite(folder: Path, change: Callable[[dict[str, Any]], Any], rec: SessionRecord | None = None) -> None:
    """Save ``rec``, then ``change`` its JSON."""
    data = saved(folder, rec)
    change(data)
    (folder / STATE_FILE).write_text(json.dumps(data))


def put(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def drop(*keys: str | int) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


BAD_RECORDS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "segments are numbers": (put("plan", "segments", value=[1, 2, 3]), "plan.segments.0"),
    "segments are a string": (put("plan", "segments", value="abc"), "plan.segments"),
    "no segments": (put("plan", "segments", value=[]), "plan.segments"),
    "a segment without a duration": (drop("plan", "segments", 0, "duration_s"), "duration_s"),
    "segments out of order": (lambda d: d["plan"]["segments"].reverse(), "segments[0] has index"),
    "a valence off the circle": (put("plan", "segments", 1, "valence", value=3.0), "valence"),
    "a plan that is a list": (put("plan", value=[]), "plan"),
    "plan settings of text": (put("plan", "settings", "minutes", value="1"), "plan.settings.minutes"),
    "an unknown plan setting": (put("plan", "settings", "loudness", value=1), "loudness"),
    "seed null": (put("seed", value=None), "seed"),
    "seed negative": (put("seed", value=-1), "seed"),
    "seed too large": (put("seed", value=2**31), "seed"),
    "seed as text": (put("seed", value="7"), "seed"),
    "index negative": (put("index", value=-3), "index"),
    "index huge": (put("index", value=10**12), "index 1000000000000 is not a segment"),
    "index one past the plan": (lambda d: d.update(index=len(d["plan"]["segments"])), "is not a segment"),
    "index a float": (put("index", value=3.0), "index"),
    "index a bool": (put("index", value=True), "index"),
    "on_end unknown": (put("on_end", value="loop"), "on_end"),
    "played_s infinite": (put("played_s", value=float("inf")), "played_s"),
    "session_id a number": (put("session_id", value=5), "session_id"),
    "no session_id": (drop("session_id"), "session_id"),
    "another version": (put("version", value=1), "version"),
    "continuation a string": (put("continuation", value="tail-00003.wav"), "continuation"),
    "continuation a list": (put("continuation", value=[]), "continuation"),
    "continuation without state": (drop("continuation", "state"), "continuation.state"),
    "continuation state a list": (put("continuation", "state", value=[1]), "continuation.state"),
    "a tail outside the folder": (put("continuation", "tail", value="../tail-00003.wav"), "tail"),
    "a tail at another rate": (put("continuation", "sample_rate", value=22050), "22050"),
    "an object of other keys": (lambda d: d.clear() or d.update(x=1), "x: Extra inputs"),
}


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[logging.LogRecord]]]:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        yield lambda: [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def assert_refused(folder: Path, lines: list[logging.LogRecord], reason: str = "") -> None:
    """Not resumed: one line naming the file and why, no traceback, the file moved aside."""
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = lines[0]
    assert line.exc_info is None and "\n" not in line.getMessage()
    assert str(folder / STATE_FILE) in line.getMessage() and "starting idle" in line.getMessage()
    assert reason in line.getMessage()
    assert not (folder / STATE_FILE).exists()
    aside = [p.name for p in folder.glob(STATE_FILE + ".bad-*")]
    assert len(aside) == 1 and re.fullmatch(r"session\.json\.bad-\d{8}T\d{6}Z", aside[0]), aside
    assert f"moved aside to {aside[0]}" in line.getMessage()


@pytest.mark.parametrize("name", BAD_RECORDS)
def test_a_record_of_the_wrong_shape_is_refused_and_moved_aside(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]], name: str
) -> None:
    change, reason = BAD_RECORDS[name]
    rewrite(tmp_path, change)
    assert StateStore(tmp_path).load() is None
    assert_refused(tmp_path, errors(), reason)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("missing", lambda tail: tail.unlink()),
        ("not a WAV", lambda tail: tail.write_bytes(b"RIFF\x00\x00garbage" * 10)),
        ("empty", lambda tail: tail.write_bytes(b"")),
        ("a folder", lambda tail: tail.unlink() or tail.mkdir()),
    ],
)
def test_a_record_whose_tail_is_missing_or_damaged_is_refused(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]], name: str, damage: Callable[[Path], Any]
) -> None:
    data = saved(tmp_path)
    damage(tmp_path / data["continuation"]["tail"])
    assert StateStore(tmp_path).load() is None
    assert_refused(tmp_path, errors(), "continuation tail")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("not JSON", b'{"plan": '),
        ("not UTF-8", b'{"session_id": "\xff\xfe"}'),
        ("JSON null", b"null"),
        ("a JSON list", b"[1, 2]"),
        ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
        ("a number too long", b'{"index": ' + b"9" * 5000 + b"}"),
        ("empty", b""),
    ],
)
def test_a_state_file_that_is_not_a_json_object_is_refused(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]], name: str, content: bytes
) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    assert StateStore(tmp_path).load() is None
    assert_refused(tmp_path, errors())


def test_a_good_record_still_resumes_after_the_checks(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]]
) -> None:
    original = record(3)
    saved(tmp_path, original)
    loaded = StateStore(tmp_path).load()
    assert loaded is not None and not errors()
    assert dataclasses.replace(loaded, continuation=None, saved_at=0.0) == dataclasses.replace(
        original, continuation=None
    )
    assert loaded.plan.to_dict() == original.plan.to_dict()
    np.testing.assert_array_equal(loaded.continuation.tail, original.continuation.tail)
    # a record without a continuation, and one holding its target past the plan's end
    plan = original.plan
    held = SessionRecord("held", plan, len(plan.segments) + 5, seed=2**31 - 1, on_end="hold")
    saved(tmp_path, held)
    assert dataclasses.replace(StateStore(tmp_path).load(), saved_at=0.0) == held
    assert not list(tmp_path.glob("*.bad-*")) and not errors()


def test_an_older_record_without_the_newer_settings_keys_resumes(tmp_path: Path) -> None:
    rewrite(tmp_path, lambda d: [d["plan"]["settings"].pop(k) for k in ("arc_min_radius", "match_clips")])
    loaded = StateStore(tmp_path).load()
    assert loaded is not None and loaded.plan.settings == record().plan.settings


def test_the_records_settings_model_is_the_planners(tmp_path: Path) -> None:
    planner = {f.name: f.default for f in dataclasses.fields(PlanSettings)}
    model = {name: info.default for name, info in _PlanSettings.model_fields.items()}
    assert list(model) == list(planner)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()} == planner


def test_only_the_newest_refused_records_are_kept(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]]
) -> None:
    for n in range(KEEP_BAD + 3):
        (tmp_path / STATE_FILE).write_text(f'{{"n": {n}}}')
        assert StateStore(tmp_path).load() is None
    aside = sorted(tmp_path.glob(STATE_FILE + ".bad-*"))
    assert len(aside) == KEEP_BAD
    assert {json.loads(p.read_text())["n"] for p in aside} == set(range(3, KEEP_BAD + 3)), "the newest"
    assert len(errors()) == KEEP_BAD + 3, "one line each"


def test_a_state_file_that_cannot_be_read_stays_where_it_is(
    tmp_path: Path, errors: Callable[[], list[logging.LogRecord]], monkeypatch: pytest.MonkeyPatch
) -> None:
    saved(tmp_path)

    def failing(self: Path) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "read_bytes", failing)
    assert StateStore(tmp_path).load() is None
    lines = errors()
    assert len(lines) == 1 and lines[0].exc_info is None and "Input/output error" in lines[0].getMessage()
    assert (tmp_path / STATE_FILE).exists() and not list(tmp_path.glob("*.bad-*")), "a disk error: kept"


def test_flush_before_any_save_returns(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.flush(timeout=1.0)
    store.close()


def test_a_daemon_resumes_a_held_record_and_starts_idle_after_a_refused_one(tmp_path: Path) -> None:
    from musicmed_stream.engines.builtin import BuiltinEngine
    from musicmed_stream.player.sinks import ManualSink
    from musicmed_stream.service.config import load_config
    from musicmed_stream.service.daemon import Daemon

    config = load_config(
        env={}, overrides={"session.jamendo": "", "service.warmup": False, "playback.buffer_seconds": 2.0}
    )
    folder = tmp_path / "state"
    plan = plan_session("sad", "calm", PlanSettings(minutes=0.1, clip_seconds=2))
    held_index = len(plan.segments) + 2

    async def resumed() -> tuple[str, int | None]:
        daemon = Daemon(config, BuiltinEngine(), ManualSink(44100, 2, 1024), folder)
        await daemon.start()
        try:
            session = daemon._session
            return daemon.status().state, None if session is None else session.next_index
        finally:
            await daemon.close(fade_seconds=0.01)

    saved(folder, SessionRecord("held", plan, held_index, seed=4, on_end="hold"))
    assert asyncio.run(resumed()) == ("playing", held_index), "past the plan's end, holding: resumed"
    bad = SessionRecord("bad", plan, 1, seed=4, on_end="stop")
    rewrite(folder, put("index", value=len(plan.segments)), bad)
    assert asyncio.run(resumed()) == ("idle", None)
    assert len(list(folder.glob(STATE_FILE + ".bad-*"))) == 1


# ---------------------------------------------------------------- file modes


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_folder_is_0700_and_its_files_0600_whatever_the_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    folder = tmp_path / "new" / "state"
    store = StateStore(folder)
    assert mode(folder) == 0o700, "created private, before anything is saved"
    store.write(record(4))
    assert mode(folder / STATE_FILE) == 0o600
    assert mode(folder / "tail-00004.wav") == 0o600
    for path in folder.iterdir():  # removed behind the store's back: the next save makes it again
        path.unlink()
    folder.rmdir()
    store.write(record(5))
    store.close()
    assert mode(folder) == 0o700 and mode(folder / STATE_FILE) == 0o600
    assert mode(folder / "tail-00005.wav") == 0o600


def test_an_open_state_folder_is_tightened_at_start_with_one_line(
    tmp_path: Path, permissive_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(0o775)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        StateStore(folder).close()
        StateStore(folder).close()  # already private: nothing to say
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert mode(folder) == 0o700
    assert len(lines) == 1 and str(folder) in lines[0] and "0775" in lines[0], lines
    assert caplog.records[0].levelno == logging.INFO


def test_a_state_folder_that_is_a_file_does_not_stop_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.write_text("not a folder")
    store = StateStore(folder)
    assert store.load() is None
    store.close()


def test_the_event_log_is_0600_whatever_the_umask(
    tmp_path: Path, permissive_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    from musicmed_stream.control.events import Event, VolumeChanged
    from musicmed_stream.service.eventlog import EventLog

    path = tmp_path / "state" / "events.jsonl"
    log = EventLog(path)
    log.write(Event(VolumeChanged(volume=0.5)))
    log.close()
    assert mode(path) == 0o600 and log.written == 1
    path.chmod(0o644)  # an older log: tightened when it is opened again
    with caplog.at_level(logging.INFO, logger="musicmed_stream.audio_io"):
        log = EventLog(path)
        log.write(Event(VolumeChanged(volume=0.6)))
        log.close()
    assert mode(path) == 0o600 and len(path.read_text().splitlines()) == 2
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_a_shared_folder_given_as_the_state_folder_is_not_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "tmp"
    folder.mkdir()
    folder.chmod(0o1777)  # like /tmp
    with caplog.at_level(logging.INFO, logger=LOGGER):
        StateStore(folder).close()
    assert mode(folder) == 0o1777
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and "not changed" in lines[0].getMessage()
