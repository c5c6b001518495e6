"""The listening history: a versioned SQLite file, readable only by its owner."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from musicmed_stream.service.history import MIGRATIONS, History


def test_a_new_history_is_private_and_at_the_latest_schema(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")
    assert history.version == len(MIGRATIONS)
    assert (tmp_path / "h.sqlite").stat().st_mode & 0o777 == 0o600
    history.close()
    again = History(tmp_path / "h.sqlite")  # opening again applies nothing twice
    assert again.version == len(MIGRATIONS)
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_an_older_history_open_to_others_is_made_private(tmp_path: Path) -> None:
    History(tmp_path / "h.sqlite").close()
    (tmp_path / "h.sqlite").chmod(0o644)
    History(tmp_path / "h.sqlite").close()
    assert (tmp_path / "h.sqlite").stat().st_mode & 0o777 == 0o600


def test_sessions_and_check_ins_read_back_newest_first(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")
    assert history.check_in("before", -0.5, 0.6, at=1000.0) is None  # no session yet
    common = {"start": (-0.5, 0.6), "target": (0.5, -0.7), "planned_s": 907.5}
    history.session_started("s1", start_label="tense", target_label="calm", at=1100.0, **common)
    history.session_ended("s1", played_s=900.0, reason="finished", at=2000.0)
    assert history.check_in("after", 0.4, -0.6, at=2100.0) == "s1"  # given to the session just ended
    history.session_started("s2", start_label="sad", target_label="happy", at=5000.0, **common)
    history.target_changed("s2", target_label="relaxed", target=(0.56, -0.71))
    first, second = history.sessions()
    assert (first.id, first.target_label, first.ended_at) == ("s2", "relaxed", None)
    assert (second.id, second.played_s, second.end_reason) == ("s1", 900.0, "finished")
    assert [(c.moment, c.valence) for c in second.checkins] == [("before", -0.5), ("after", 0.4)]
    assert history.session("s1").id == "s1" and history.session("s") is None  # a prefix must be unique


def test_a_value_the_schema_refuses_is_logged_once_and_nothing_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = History(tmp_path / "h.sqlite")
    with caplog.at_level(logging.ERROR, logger="musicmed_stream.service.history"):
        for _ in range(3):
            history.check_in("before", 2.0, 0.0)  # outside the circle: the CHECK constraint refuses
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert history.sessions() == []
