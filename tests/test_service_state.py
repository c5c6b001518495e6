"""The session record: saved atomically off the audio path, read back, failures said once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from musicmed_stream.engines.base import Continuation
from musicmed_stream.planner import PlanSettings, plan_session
from musicmed_stream.service.state import STATE_FILE, SessionRecord, StateStore


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


def test_a_cleared_or_damaged_record_is_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    store.save(record())
    store.clear()
    store.close()
    assert StateStore(tmp_path).load() is None and not list(tmp_path.iterdir())
    (tmp_path / STATE_FILE).write_text('{"plan": ')
    with caplog.at_level(logging.ERROR):
        assert StateStore(tmp_path).load() is None
    assert "cannot read the saved session" in caplog.text


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
