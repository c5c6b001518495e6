"""The daemon's event log: every :class:`~musicmed_stream.control.events.Event` as a JSON line.

Lines are ``{"type": ..., "data": {...}, "time": ...}``, appended and flushed one by one, the
format ``musicmed-stream evaluate`` reads next to a recording. Writing happens on a thread of its
own, so a slow disk never holds up the event loop; a failed write (a full disk, a removed folder)
is logged once and the log carries on with the next event, so playback is never affected. The
file is the listener's own: created with mode 0600 whatever the umask (an older, looser one is
tightened).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import IO, Any

from musicmed_stream.audio_io import PRIVATE_FILE_MODE, make_private
from musicmed_stream.control.events import Event
from musicmed_stream.jsonable import to_jsonable

log = logging.getLogger(__name__)

_STOP = object()


def event_line(event: Event) -> str:
    """One event as a line of JSON: ``{"type", "data", "time"}``."""
    return json.dumps(to_jsonable(event.to_dict()), separators=(",", ":")) + "\n"


class EventLog:
    """Append events to ``path`` from a writer thread.

    Parameters
    ----------
    path : Path
        The log file (mode 0600); its folder is created. Opened in append mode, so a restarted
        daemon adds to it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self.failed = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._file: IO[str] | None = None
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()

    def write(self, event: Event) -> None:
        """Queue ``event`` for writing; returns at once."""
        self._queue.put(event)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then close the file."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (event := self._queue.get()) is not _STOP:
            try:
                self._append(event_line(event))
            except (OSError, TypeError, ValueError) as exc:
                self.failed += 1
                if not self._failing:  # once per run of failures, not once per event
                    log.error("cannot write the event log %s: %s (playback goes on)", self.path, exc)
                    self._failing = True
                self._close_file()  # reopened by the next write: the disk may have room again
                continue
            self.written += 1
            if self._failing:
                log.info("event log %s is written again", self.path)
                self._failing = False
        self._close_file()

    def _append(self, line: str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
            make_private(fd, self.path)  # exactly 0600: the umask may have taken bits of a new file's
            self._file = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - held open across events
        self._file.write(line)
        self._file.flush()

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a failed flush on close: already logged
                self._file.close()
            self._file = None
