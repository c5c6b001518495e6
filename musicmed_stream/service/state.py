"""The session record: what a restarted daemon needs to carry on where the listener was.

:class:`StateStore` saves a :class:`SessionRecord` to the state folder atomically (the continuation
tail as a WAV, then the JSON that names it) and reads it back. Saving runs on a thread of its own
and only the newest record waits to be written, so a slow or full disk never holds up playback: a
failure is logged once, and once more when saving works again.

Saving is incremental: the plan (up to ``session.max_segments`` segments, a few hundred kB) goes
into a file of its own, ``plan-<digest>.json``, written only when the plan changes (start,
re-target, extend); ``session.json``, rewritten at every segment, names it and stays small.

A record is read back through a typed model (:class:`_RecordModel`): anything else (a damaged or
hand-edited file, a missing tail) is refused with one line, moved aside as
``session.json.bad-<UTC time>`` (the newest :data:`KEEP_BAD` are kept) and the daemon starts idle.
The folder is the listener's own: created with mode 0700 (an older, looser one is tightened), its
files 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from musicmed_stream.audio_io import PRIVATE_FILE_MODE, read_audio, write_audio, write_text_atomic
from musicmed_stream.bounds import (
    ClipCount,
    ClipSeconds,
    Coordinate,
    CrossfadeFraction,
    Minutes,
    OnEnd,
    PathShape,
    Seed,
    Temperature,
    UnitInterval,
    error_key,
)
from musicmed_stream.engines.base import Continuation
from musicmed_stream.errors import MusicMedError
from musicmed_stream.jsonable import to_jsonable
from musicmed_stream.planner.types import Plan, PlanSettings

log = logging.getLogger(__name__)

STATE_FILE = "session.json"
VERSION = 3  # 3: the plan in a file of its own; 2 (the plan inline) is still read
PLAN_FILE = re.compile(r"^plan-[0-9a-f]{16}\.json$")  # a name in the folder, nothing else
PRIVATE_FOLDER_MODE = 0o700
KEEP_BAD = 3  # refused records kept aside, the newest
MAX_STATE_BYTES = 64 << 20  # a plan of MAX_CLIPS segments is a few hundred kB
# Past its plan, a session that holds its target (on_end = "hold") goes on with held segments and
# saves their index: at most this many (29 days of the shortest clips, 0.25 s apart at the most overlap).
MAX_HELD = 10**7


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
        # made private now, before the history and the event log put files in it; a folder that
        # cannot be made is said by the first save that fails
        with contextlib.suppress(OSError):
            make_private_folder(folder)
        self._pending: SessionRecord | bool | None = False  # False: nothing to do; None: clear
        self._cond = threading.Condition()
        self._failing = False
        self._closed = False
        self._busy = False
        self._plan_written: tuple[Plan, str] | None = None  # the plan last written, and its file
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
        """The saved session, or ``None`` when there is none or it cannot be used (one line logged).

        A file that is not a valid record (JSON of another shape, values out of their bounds, a
        segment index outside the plan, a tail WAV missing or damaged) is moved aside as
        ``session.json.bad-<UTC time>``; one that cannot be read at all (a disk error) stays.
        """
        path = self.folder / STATE_FILE
        try:
            if not path.is_file():
                return None
            raw = path.read_bytes() if path.stat().st_size <= MAX_STATE_BYTES else None
        except OSError as exc:
            log.error("cannot read the saved session %s: %s; starting idle", path, exc.strerror or exc)
            return None
        try:
            if raw is None:
                raise _Refused(f"larger than {MAX_STATE_BYTES >> 20} MB")
            return self._record(raw)
        except _Refused as exc:
            self._refuse(path, str(exc))
            return None

    def write(self, record: SessionRecord) -> None:
        """Save ``record`` now, on the calling thread (raises ``OSError``/``MusicMedError``)."""
        make_private_folder(self.folder)
        keep = None
        cont = record.continuation
        if cont is not None:
            keep = f"tail-{record.index:05d}.wav"
            tail = cont.tail if cont.tail.shape[0] else np.zeros((1, max(cont.tail.shape[1], 1)), np.float32)
            write_audio(self.folder / keep, tail, cont.sample_rate, subtype="FLOAT", mode=PRIVATE_FILE_MODE)
        plan_file = self._write_plan(record.plan)
        text = json.dumps(_to_json(record, keep, plan_file), indent=1)
        write_text_atomic(self.folder / STATE_FILE, text, mode=PRIVATE_FILE_MODE)
        for old in [*self.folder.glob("tail-*.wav"), *self.folder.glob("plan-*.json")]:
            if old.name not in (keep, plan_file):
                old.unlink(missing_ok=True)

    def remove(self) -> None:
        """Forget the saved session now, on the calling thread."""
        self._plan_written = None
        for pattern in (STATE_FILE, "tail-*.wav", "plan-*.json"):
            for path in self.folder.glob(pattern):
                path.unlink(missing_ok=True)

    def _write_plan(self, plan: Plan) -> str:
        """The name of ``plan``'s file, written if this store has not written it yet (plans are
        immutable: the same object is the same plan)."""
        if self._plan_written is not None and self._plan_written[0] is plan:
            name = self._plan_written[1]
            if (self.folder / name).is_file():
                return name
        text = json.dumps(plan.to_dict(), indent=1)
        name = f"plan-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        write_text_atomic(self.folder / name, text, mode=PRIVATE_FILE_MODE)
        self._plan_written = (plan, name)
        return name

    def _record(self, raw: bytes) -> SessionRecord:
        """The record in ``raw``, its plan and tail read from the folder; ``_Refused`` saying why not."""
        raw = self._with_plan(raw)
        try:
            model = _RecordModel.model_validate_json(raw)
        except ValidationError as exc:
            raise _Refused(_problem(exc)) from None
        except RecursionError:  # pydantic's parser has its own depth limit; this is in case
            raise _Refused("nested too deeply") from None
        continuation = None
        if model.continuation is not None:
            cont = model.continuation
            if not (self.folder / cont.tail).is_file():
                raise _Refused(f"its continuation tail {cont.tail} is missing")
            try:
                tail, rate = read_audio(self.folder / cont.tail)
            except MusicMedError as exc:
                raise _Refused(f"its continuation tail: {exc}") from None
            if rate != cont.sample_rate:
                raise _Refused(f"its tail {cont.tail} is at {rate} Hz, the record says {cont.sample_rate}")
            continuation = Continuation(tail=tail, sample_rate=rate, state=cont.state)
        try:
            plan = Plan.from_dict(model.plan.model_dump(exclude_unset=True))
        except Exception as exc:  # the model is the check; this is in case it let something through
            raise _Refused(f"plan: {type(exc).__name__}: {exc}") from None
        return SessionRecord(
            session_id=model.session_id,
            plan=plan,
            index=model.index,
            seed=model.seed,
            on_end=model.on_end,
            played_s=model.played_s,
            continuation=continuation,
            saved_at=model.saved_at,
        )

    def _with_plan(self, raw: bytes) -> bytes:
        """A version-3 record (the plan in its own file) as the model reads it, the plan inline;
        anything else as it is (the model says what is wrong with it)."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return raw
        if not isinstance(data, dict) or data.get("version") != VERSION or "plan_file" not in data:
            return raw
        name = data.pop("plan_file")
        if not isinstance(name, str) or not PLAN_FILE.match(name):
            raise _Refused(f"plan_file {str(name)[:80]!r} is not a plan file's name")
        try:
            path = self.folder / name
            if path.stat().st_size > MAX_STATE_BYTES:
                raise _Refused(f"its plan {name} is larger than {MAX_STATE_BYTES >> 20} MB")
            data["plan"] = json.loads(path.read_bytes())
        except OSError as exc:
            raise _Refused(f"its plan {name} cannot be read: {exc.strerror or exc}") from None
        except (ValueError, RecursionError):
            raise _Refused(f"its plan {name} is not JSON") from None
        data["version"] = 2  # the model's inline form
        return json.dumps(data).encode()

    def _refuse(self, path: Path, reason: str) -> None:
        """Say (one line) why the record at ``path`` is not resumed, and move it aside."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        # refused again within the same second: numbered after the others, so the order stays
        taken = [_bad_order(p)[1] for p in self.folder.glob(f"{path.name}.bad-{stamp}*")]
        aside = path.with_name(f"{path.name}.bad-{stamp}" + (f"-{max(taken) + 1}" if taken else ""))
        try:
            os.replace(path, aside)
        except OSError as exc:
            where = f"it could not be moved aside ({exc.strerror or exc})"
        else:
            where = f"moved aside to {aside.name}"
            self._prune_bad(path)
        log.error("not resuming the saved session %s: %s; %s; starting idle", path, reason, where)

    def _prune_bad(self, path: Path) -> None:
        """Keep the newest :data:`KEEP_BAD` refused records (their names sort by time)."""
        bad = sorted(self.folder.glob(f"{path.name}.bad-*"), key=_bad_order)
        for old in bad[:-KEEP_BAD]:
            with contextlib.suppress(OSError):
                old.unlink()

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


def _to_json(record: SessionRecord, tail_name: str | None, plan_file: str) -> dict[str, Any]:
    cont = record.continuation
    return {
        "version": VERSION,
        "session_id": record.session_id,
        "index": record.index,
        "seed": record.seed,
        "on_end": record.on_end,
        "plan_file": plan_file,
        "continuation": None
        if cont is None
        else {"state": to_jsonable(cont.state), "sample_rate": cont.sample_rate, "tail": tail_name},
        "played_s": record.played_s,
        "saved_at": record.saved_at or time.time(),
    }


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` (its parents as usual) with mode 0700 whatever the umask, or tighten an
    existing one that others could enter (said at INFO; at WARNING when it cannot be changed).

    Raises ``OSError`` when it cannot be created (or is not a folder).
    """
    try:
        folder.mkdir(parents=True, mode=PRIVATE_FOLDER_MODE)
    except FileExistsError:
        if not folder.is_dir():
            raise
    else:
        os.chmod(folder, PRIVATE_FOLDER_MODE)  # the umask may have taken bits of the mode
        return
    status = folder.stat()
    mode = stat.S_IMODE(status.st_mode)
    if not mode & 0o077:
        return
    shared = _shared_folder(folder, status)
    if shared:  # a state_dir pointed at /tmp or a home: left as it is, but said
        log.warning("state folder %s is open to others (mode %04o) and %s: not changed", folder, mode, shared)
        return
    try:
        os.chmod(folder, PRIVATE_FOLDER_MODE)
    except OSError as exc:
        log.warning("state folder %s is open to others (mode %04o): %s", folder, mode, exc.strerror or exc)
        return
    log.info("state folder %s was open to others (mode %04o): now %04o", folder, mode, PRIVATE_FOLDER_MODE)


def _shared_folder(folder: Path, status: os.stat_result) -> str:
    """Why ``folder`` is not the daemon's own to tighten (``""`` when it is)."""
    if status.st_mode & stat.S_ISVTX:
        return "shared (sticky, like /tmp)"
    if hasattr(os, "geteuid") and status.st_uid != os.geteuid():
        return "another user's"
    resolved = folder.resolve()
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no home to tell
        home = None
    if resolved in (Path(resolved.anchor), home):
        return "not a folder of its own"
    return ""


class _Refused(Exception):
    """A saved record that is not resumed; the message says why."""


def _problem(exc: ValidationError) -> str:
    """The first problem of a validation error as a short phrase naming the key."""
    error = exc.errors(include_url=False)[0]
    key = error_key(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "json_invalid":
        return f"not JSON ({error.get('ctx', {}).get('error', message)})"
    return f"{key}: {message}" if key else message


def _bad_order(path: Path) -> tuple[str, int]:
    stamp, _, n = path.name.rpartition(".bad-")[2].partition("-")
    return stamp, int(n) if n.isdigit() else 0


# The record as saved (see _to_json), every value within its bounds: what load() accepts.
_Label = Annotated[str, Field(max_length=200)]
_PLAN_DEFAULTS = PlanSettings()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Point(_Strict):
    valence: Coordinate
    arousal: Coordinate


class _PlanSettings(_Strict):
    """:class:`~musicmed_stream.planner.types.PlanSettings`, whose defaults fill what a record lacks
    (a test keeps both field lists the same)."""

    minutes: Minutes = _PLAN_DEFAULTS.minutes
    clip_seconds: ClipSeconds = _PLAN_DEFAULTS.clip_seconds
    path: PathShape = _PLAN_DEFAULTS.path
    temperature: Temperature = _PLAN_DEFAULTS.temperature
    match_clips: ClipCount = _PLAN_DEFAULTS.match_clips
    settle_clips: ClipCount = _PLAN_DEFAULTS.settle_clips
    seed: Seed = _PLAN_DEFAULTS.seed
    arc_min_radius: UnitInterval = _PLAN_DEFAULTS.arc_min_radius
    crossfade_fraction: CrossfadeFraction = _PLAN_DEFAULTS.crossfade_fraction
    exclude_genres: list[_Label] = list(_PLAN_DEFAULTS.exclude_genres)
    exclude_instruments: list[_Label] = list(_PLAN_DEFAULTS.exclude_instruments)


class _Segment(_Strict):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)  # "prompt" is derived

    index: Annotated[int, Field(ge=0)]
    start_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    duration_s: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)]
    valence: Coordinate
    arousal: Coordinate
    emotion: _Label
    mood: _Label
    instrument: _Label
    genre: _Label


class _Meta(_Strict):
    """Where the plan's palette and mapping came from (a re-plan reads them again)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    statistics: str = "builtin"
    mapping: str = ""
    replans: list[dict[str, Any]] = []


class _Plan(_Strict):
    start: _Point
    target: _Point
    start_label: _Label = ""
    target_label: _Label = ""
    settings: _PlanSettings
    segments: Annotated[list[_Segment], Field(min_length=1, max_length=MAX_HELD)]
    meta: _Meta = _Meta()

    @model_validator(mode="after")
    def _numbered(self) -> _Plan:
        for position, segment in enumerate(self.segments):
            if segment.index != position:
                raise ValueError(f"segments[{position}] has index {segment.index}")
        return self


class _Continuation(_Strict):
    state: dict[str, Any]
    sample_rate: Annotated[int, Field(ge=1000, le=384000)]
    tail: Annotated[str, Field(pattern=r"^tail-[0-9]{5,}\.wav$")]  # a name in the folder, nothing else


class _RecordModel(_Strict):
    version: Literal[2]  # the plan inline (version 3 is read as this: StateStore._with_plan)
    session_id: Annotated[str, Field(min_length=1, max_length=200)]
    index: Annotated[int, Field(ge=0)]
    seed: Seed
    on_end: OnEnd = "stop"
    plan: _Plan
    continuation: _Continuation | None
    played_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    saved_at: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _index_in_plan(self) -> _RecordModel:
        """The segment playing is one of the plan's; past its end only while holding the target."""
        count = len(self.plan.segments)
        if self.index < count or (self.on_end == "hold" and self.index < count + MAX_HELD):
            return self
        within = f"[0, {count})" if self.on_end != "hold" else f"[0, {count + MAX_HELD}) (holding)"
        raise ValueError(f"index {self.index} is not a segment of the plan: must be within {within}")


__all__ = ["STATE_FILE", "SessionRecord", "StateStore", "make_private_folder"]
