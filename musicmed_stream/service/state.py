"""The session record: what a restarted daemon needs to carry on where the listener was.

:class:`StateStore` saves a :class:`SessionRecord` to the state folder atomically (the continuation
tail as a WAV, then the JSON that names it) and reads it back. Saving runs on a thread of its own
and only the newest record waits to be written, so a slow or full disk never holds up playback: a
failure is logged once, and once more when saving works again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.audio_io import read_audio, write_audio, write_text_atomic
from musicmed_stream.engines.base import Continuation
from musicmed_stream.errors import MusicMedError
from musicmed_stream.jsonable import to_jsonable
from musicmed_stream.planner.types import Plan

log = logging.getLogger(__name__)

STATE_FILE = "session.json"
VERSION = 2


@dataclass(frozen=True)
class SessionRecord:
    """A session as saved: its plan, the segment playing and what that segment continued from.

    Attributes
    ----------
    session_id : str
    plan : Plan
    index : int
        The segment the listener was hearing.
    seed : int
    on_end : str
    played_s : float
    continuation : Continuation or None
        What segment ``index`` was generated from (its clip is made again identically on resume).
    saved_at : float
        Unix time.
    """

    session_id: str
    plan: Plan
    index: int
    seed: int
    on_end: str
    played_s: float = 0.0
    continuation: Continuation | None = None
    saved_at: float = 0.0


class StateStore:
    """Save and load the session record in ``folder``.

    Parameters
    ----------
    folder : Path
        The state folder (created on the first save).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pending: SessionRecord | bool | None = False  # False: nothing to do; None: clear
        self._cond = threading.Condition()
        self._failing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="state", daemon=True)
        self._thread.start()

    def save(self, record: SessionRecord) -> None:
        """Save ``record`` soon (returns at once; a newer record replaces one still waiting)."""
        self._post(record)

    def clear(self) -> None:
        """Forget the saved session soon (it ended)."""
        self._post(None)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what was given to :meth:`save` or :meth:`clear` is done (or has failed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is False and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what waits, then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def load(self) -> SessionRecord | None:
        """The saved session, or ``None`` when there is none or it cannot be read (logged)."""
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            continuation = None
            if data["continuation"] is not None:
                cont = data["continuation"]
                tail, rate = read_audio(self.folder / cont["tail"])
                continuation = Continuation(tail=tail, sample_rate=rate, state=cont["state"])
            return SessionRecord(
                session_id=str(data["session_id"]),
                plan=Plan.from_dict(data["plan"]),
                index=int(data["index"]),
                seed=int(data["seed"]),
                on_end=str(data.get("on_end", "stop")),
                played_s=float(data.get("played_s", 0.0)),
                continuation=continuation,
                saved_at=float(data.get("saved_at", 0.0)),
            )
        except (OSError, ValueError, KeyError, TypeError, MusicMedError) as exc:
            log.error("cannot read the saved session in %s (%s); starting idle", self.folder, exc)
            return None

    def write(self, record: SessionRecord) -> None:
        """Save ``record`` now, on the calling thread (raises ``OSError``/``MusicMedError``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        keep = None
        cont = record.continuation
        if cont is not None:
            keep = f"tail-{record.index:05d}.wav"
            tail = cont.tail if cont.tail.shape[0] else np.zeros((1, max(cont.tail.shape[1], 1)), np.float32)
            write_audio(self.folder / keep, tail, cont.sample_rate, subtype="FLOAT")
        write_text_atomic(self.folder / STATE_FILE, json.dumps(_to_json(record, keep), indent=1))
        for old in self.folder.glob("tail-*.wav"):
            if old.name != keep:
                old.unlink(missing_ok=True)

    def remove(self) -> None:
        """Forget the saved session now, on the calling thread."""
        for path in [self.folder / STATE_FILE, *self.folder.glob("tail-*.wav")]:
            path.unlink(missing_ok=True)

    def _post(self, value: SessionRecord | None) -> None:
        with self._cond:
            self._pending = value
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is False and not self._closed:
                    self._cond.wait()
                job, self._pending = self._pending, False
                closed = self._closed
                self._busy = job is not False
            if job is not False:
                self._do(job)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if closed and job is False:
                return

    def _do(self, job: SessionRecord | None) -> None:
        try:
            self.remove() if job is None else self.write(job)
        except (OSError, MusicMedError) as exc:
            if not self._failing:  # once per run of failures, not once per segment
                log.error("cannot save the session state in %s: %s (playback goes on)", self.folder, exc)
                self._failing = True
            return
        if self._failing:
            log.info("session state in %s is saved again", self.folder)
            self._failing = False


def _to_json(record: SessionRecord, tail_name: str | None) -> dict[str, Any]:
    cont = record.continuation
    return {
        "version": VERSION,
        "session_id": record.session_id,
        "index": record.index,
        "seed": record.seed,
        "on_end": record.on_end,
        "plan": record.plan.to_dict(),
        "continuation": None
        if cont is None
        else {"state": to_jsonable(cont.state), "sample_rate": cont.sample_rate, "tail": tail_name},
        "played_s": record.played_s,
        "saved_at": record.saved_at or time.time(),
    }


__all__ = ["STATE_FILE", "SessionRecord", "StateStore"]
