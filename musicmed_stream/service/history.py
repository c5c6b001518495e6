"""The listening history: sessions and mood check-ins, in an SQLite database in the state folder.

One row per session (when, from where to where, how long it played, how it ended, where its audio
was recorded) and one per check-in (how the listener felt before or after, a point they tapped on
the circle). Nothing personal beyond what the listener enters: no names, no free text. The file is
created with mode 0600 and its schema carries a version (``schema_migrations``), so that a newer
daemon upgrades an older file in place.

Writes are small and rare (a few per session); the daemon runs them off the event loop. A database
that cannot be written (a full or read-only disk) is logged once and playback goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicmed_stream.audio_io import make_private

log = logging.getLogger(__name__)

HISTORY_FILE = "history.sqlite"
CHECKIN_WINDOW_S = 30 * 60  # a check-in this close before a session (or after it) belongs to it

# Each migration brings the schema from version n to n + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        start_label TEXT NOT NULL,
        target_label TEXT NOT NULL,
        start_valence REAL NOT NULL,
        start_arousal REAL NOT NULL,
        target_valence REAL NOT NULL,
        target_arousal REAL NOT NULL,
        planned_s REAL NOT NULL,
        played_s REAL,
        end_reason TEXT,
        recording TEXT,
        recording_offset_s REAL
    );
    CREATE TABLE checkins (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT REFERENCES sessions(id),
        at REAL NOT NULL,
        moment TEXT NOT NULL CHECK (moment IN ('before', 'after')),
        valence REAL NOT NULL CHECK (valence BETWEEN -1 AND 1),
        arousal REAL NOT NULL CHECK (arousal BETWEEN -1 AND 1)
    );
    CREATE INDEX checkins_session ON checkins(session_id);
    """,
)


@dataclass(frozen=True)
class CheckIn:
    """How the listener felt, before or after a session: a point on the circumplex."""

    moment: str
    valence: float
    arousal: float
    at: float


@dataclass(frozen=True)
class SessionEntry:
    """One session of the history, with its check-ins."""

    id: str
    started_at: float
    ended_at: float | None
    start_label: str
    target_label: str
    start: tuple[float, float]
    target: tuple[float, float]
    planned_s: float
    played_s: float | None
    end_reason: str | None
    recording: str | None
    recording_offset_s: float | None
    checkins: tuple[CheckIn, ...] = field(default_factory=tuple)


class History:
    """The history database at ``path`` (created, mode 0600, and migrated on open).

    Parameters
    ----------
    path : Path
        The SQLite file, e.g. ``STATE_DIR / "history.sqlite"``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # one connection, used from worker threads one at a time
        self._failing = False
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        else:
            make_private(path)  # an older, looser file is tightened
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)

    def _migrate(self) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
            )
            done = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            for version, script in enumerate(MIGRATIONS[done:], start=done + 1):
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, sql: str, args: tuple[Any, ...]) -> bool:
        """Run one write; a failure is logged once (and its end once), never raised."""
        try:
            with self._lock, self._transaction():
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            if not self._failing:
                log.error("cannot write the listening history %s: %s (playback goes on)", self.path, exc)
                self._failing = True
            return False
        if self._failing:
            log.info("listening history %s is written again", self.path)
            self._failing = False
        return True

    # ------------------------------------------------------------------ sessions

    def session_started(
        self,
        session_id: str,
        *,
        start_label: str,
        target_label: str,
        start: tuple[float, float],
        target: tuple[float, float],
        planned_s: float,
        recording: str | None = None,
        recording_offset_s: float | None = None,
        at: float | None = None,
    ) -> bool:
        """Record a new session; a ``before`` check-in of the last half hour without a session
        is given to it."""
        at = time.time() if at is None else at
        ok = self._write(
            "INSERT OR REPLACE INTO sessions (id, started_at, start_label, target_label, start_valence,"
            " start_arousal, target_valence, target_arousal, planned_s, recording, recording_offset_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                at,
                start_label,
                target_label,
                *start,
                *target,
                planned_s,
                recording,
                recording_offset_s,
            ),
        )
        self._write(
            "UPDATE checkins SET session_id = ? WHERE session_id IS NULL AND moment = 'before' AND at >= ?",
            (session_id, at - CHECKIN_WINDOW_S),
        )
        return ok

    def session_ended(
        self, session_id: str, *, played_s: float, reason: str, at: float | None = None
    ) -> bool:
        return self._write(
            "UPDATE sessions SET ended_at = ?, played_s = ?, end_reason = ? WHERE id = ?",
            (time.time() if at is None else at, played_s, reason, session_id),
        )

    def target_changed(self, session_id: str, *, target_label: str, target: tuple[float, float]) -> bool:
        return self._write(
            "UPDATE sessions SET target_label = ?, target_valence = ?, target_arousal = ? WHERE id = ?",
            (target_label, *target, session_id),
        )

    def check_in(
        self,
        moment: str,
        valence: float,
        arousal: float,
        session_id: str | None = None,
        at: float | None = None,
    ) -> str | None:
        """Record how the listener feels; returns the session it was given to (an ``after``
        check-in without one goes to the last session that ended in the last half hour)."""
        at = time.time() if at is None else at
        if session_id is None and moment == "after":
            with self._lock:
                row = self._db.execute(
                    "SELECT id FROM sessions WHERE ended_at >= ? ORDER BY ended_at DESC LIMIT 1",
                    (at - CHECKIN_WINDOW_S,),
                ).fetchone()
            session_id = row[0] if row else None
        self._write(
            "INSERT INTO checkins (session_id, at, moment, valence, arousal) VALUES (?, ?, ?, ?, ?)",
            (session_id, at, moment, valence, arousal),
        )
        return session_id

    def plan_changed(self, session_id: str, *, planned_s: float) -> bool:
        return self._write("UPDATE sessions SET planned_s = ? WHERE id = ?", (planned_s, session_id))

    # ------------------------------------------------------------------ reading

    def recent_checkin(self, moment: str, since: float) -> CheckIn | None:
        """The latest check-in of ``moment`` not given to a session yet, made after ``since``."""
        with self._lock:
            row = self._db.execute(
                "SELECT moment, valence, arousal, at FROM checkins WHERE moment = ? AND session_id IS NULL"
                " AND at >= ? ORDER BY at DESC LIMIT 1",
                (moment, since),
            ).fetchone()
        return CheckIn(*row) if row else None

    def sessions(self, limit: int = 20) -> list[SessionEntry]:
        """The latest ``limit`` sessions, newest first, each with its check-ins."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, started_at, ended_at, start_label, target_label, start_valence, start_arousal,"
                " target_valence, target_arousal, planned_s, played_s, end_reason, recording,"
                " recording_offset_s FROM sessions ORDER BY started_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            checkins = {
                row[0]: self._db.execute(
                    "SELECT moment, valence, arousal, at FROM checkins WHERE session_id = ? ORDER BY at",
                    (row[0],),
                ).fetchall()
                for row in rows
            }
        return [
            SessionEntry(
                id=r[0],
                started_at=r[1],
                ended_at=r[2],
                start_label=r[3],
                target_label=r[4],
                start=(r[5], r[6]),
                target=(r[7], r[8]),
                planned_s=r[9],
                played_s=r[10],
                end_reason=r[11],
                recording=r[12],
                recording_offset_s=r[13],
                checkins=tuple(CheckIn(*c) for c in checkins[r[0]]),
            )
            for r in rows
        ]

    def session(self, session_id: str) -> SessionEntry | None:
        """One session by id (a unique prefix will do)."""
        with self._lock:
            ids = [
                r[0] for r in self._db.execute("SELECT id FROM sessions WHERE id LIKE ?", (session_id + "%",))
            ]
        if len(ids) != 1:
            return None
        return next((s for s in self.sessions(limit=10**6) if s.id == ids[0]), None)


__all__ = ["HISTORY_FILE", "CheckIn", "History", "SessionEntry"]
