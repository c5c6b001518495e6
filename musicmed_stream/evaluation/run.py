"""Read a session to evaluate: an offline render folder or a daemon recording with its event log.

Render folder (``musicmed-stream render --out DIR``): ``plan.json``, ``clips/clip_000.wav``...,
``session.wav`` (or ``.flac``), ``render.json``.

Daemon folder: one recording (``recording.wav``/``.flac``, ``musicmed-stream.wav``/``.flac`` (the
file sink's default name) or ``session.wav``/``.flac``) and an event log ``events.jsonl`` (one
``Event`` as JSON per line, ``{"type": ..., "data": {...}, "time": ...}``, or the lines
``musicmed-stream ctl follow --json`` prints; a JSON array in ``events.json`` works too).
``segment_started`` events give each clip's planned point, mood, prompt and ``start_s`` (session
time); a clip's audio runs from its ``start_s`` to the next one's. The session's place in the
recording is found from its first sound (:func:`session_offset`). A log of several sessions (the
daemon's ``service.event_log`` is appended to) is read from its last ``session_started`` on.

Daemon state folder (``service.state_dir``): ``events.jsonl`` and the listening history
``history.sqlite``, whose session rows say which recording holds each session and where it begins
(``recording``, ``recording_offset_s``), so that any session can be evaluated, not only the last
(:func:`load_state_session`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from musicmed_stream.audio_io import read_audio
from musicmed_stream.chain import overlap_frames
from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import AudioError, MusicMedError
from musicmed_stream.planner.types import Plan

RECORDING_NAMES = (
    "recording.wav",
    "recording.flac",
    "musicmed-stream.wav",
    "musicmed-stream.flac",
    "session.wav",
    "session.flac",
)
HISTORY_FILE = "history.sqlite"  # the daemon's listening history (musicmed_stream.service.history)


class RunError(MusicMedError, ValueError):
    """A run folder that cannot be evaluated (missing or malformed files)."""


@dataclass(frozen=True)
class ClipRecord:
    """One clip of the session with what was intended for it."""

    index: int
    planned: VA
    mood: str
    prompt: str
    start_s: float
    end_s: float
    audio: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class Run:
    """A session ready to evaluate.

    ``clips`` hold each clip's own audio (the engine's clip files for a render, slices of the
    recording for the daemon); ``session`` is what the listener hears, and each clip's
    ``start_s``/``end_s`` are its place in it.
    """

    kind: str
    folder: Path
    clips: tuple[ClipRecord, ...]
    session: np.ndarray
    sample_rate: int
    plan: Plan | None = None
    render_info: dict[str, Any] = field(default_factory=dict)
    offset_s: float = 0.0
    session_id: str | None = None
    recording: Path | None = None


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from exc


def clip_offsets(
    lengths: list[int], sample_rate: int, crossfade_fraction: float = 0.25
) -> list[tuple[float, float]]:
    """Each clip's (start, end) in seconds in a session of crossfaded clips of ``lengths`` frames.

    The overlap of adjacent clips is the audio chain's own rule
    (:func:`musicmed_stream.chain.overlap_frames`); the render folder stores the clips before the
    chain, so their places in ``session.wav`` are reconstructed from their lengths.
    """
    spans, start = [], 0
    for i, length in enumerate(lengths):
        spans.append((start / sample_rate, (start + length) / sample_rate))
        if i + 1 < len(lengths):
            start += length - overlap_frames(length, lengths[i + 1], crossfade_fraction)
    return spans


def load_render(folder: Path) -> Run:
    """Load an offline render folder."""
    try:
        plan = Plan.from_dict(_read_json(folder / "plan.json"))
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{folder / 'plan.json'} is not a plan: {exc!r}") from exc
    if not plan.segments:
        raise RunError(f"{folder / 'plan.json'} has no segments")
    session_path = _first_existing(folder, ("session.wav", "session.flac"))
    if session_path is None:
        raise RunError(f"{folder} has plan.json but no session.wav or session.flac (is the render finished?)")
    session, sr = read_audio(session_path)
    info = _read_json(folder / "render.json") if (folder / "render.json").is_file() else {}
    clip_audio = []
    for segment in plan.segments:
        path = _first_existing(
            folder / "clips", (f"clip_{segment.index:03d}.wav", f"clip_{segment.index:03d}.flac")
        )
        if path is None:
            raise RunError(f"clip file for segment {segment.index} missing in {folder / 'clips'}")
        clip_audio.append(read_audio(path))
    fraction = (
        float(info.get("chain", {}).get("crossfade_fraction", 0.25)) if isinstance(info, dict) else 0.25
    )
    rates = {r for _, r in clip_audio}
    if len(rates) != 1:
        raise RunError(f"clips in {folder / 'clips'} have different sample rates: {sorted(rates)}")
    spans = clip_offsets([a.shape[0] for a, _ in clip_audio], rates.pop(), fraction)
    scale = (session.shape[0] / sr) / spans[-1][1] if spans and spans[-1][1] > 0 else 1.0
    clips = tuple(
        ClipRecord(
            index=s.index,
            planned=s.va,
            mood=s.mood,
            prompt=s.prompt,
            # The chain trims silence, so the reconstructed grid is stretched to the session's length.
            start_s=a * scale,
            end_s=b * scale,
            audio=audio,
            sample_rate=rate,
        )
        for s, (audio, rate), (a, b) in zip(plan.segments, clip_audio, spans, strict=True)
    )
    return Run("render", folder, clips, session, sr, plan, info if isinstance(info, dict) else {})


def _event_type(entry: Any) -> str | None:
    """The event type of a log entry: an ``Event`` (``{"type": "segment_started", ...}``) or a
    control-protocol event message as ``ctl follow --json`` prints it (``{"type": "event",
    "event": "segment_started", ...}``); ``None`` for other lines (command replies)."""
    if not isinstance(entry, dict):
        return None
    kind = entry.get("event") if entry.get("type") == "event" else entry.get("type")
    return kind if isinstance(kind, str) else None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Events from a JSON-lines log or a JSON array, as dicts with ``type`` and ``data``.

    Lines that are not events (e.g. the replies ``ctl`` prints before following) are skipped.
    """
    text = path.read_text(encoding="utf-8")
    try:
        entries = (
            json.loads(text)
            if path.suffix == ".json"
            else [json.loads(x) for x in text.splitlines() if x.strip()]
        )
    except ValueError as exc:
        raise RunError(f"cannot parse event log {path}: {exc}") from exc
    if not isinstance(entries, list):
        raise RunError(f"event log {path} must be a list of events")
    events = []
    for entry in entries:
        kind = _event_type(entry)
        if kind is not None and kind != "event":
            data = entry.get("data")
            events.append(
                {"type": kind, "data": data if isinstance(data, dict) else {}, "time": entry.get("time")}
            )
    return events


def session_offset(
    recording: np.ndarray, sample_rate: int, first_start_s: float, threshold_db: float = -50.0
) -> float:
    """Where the session begins in a recording that may start with the idle daemon's silence.

    The first clip's audio has its leading silence trimmed by the chain, so the session's first
    sound (above ``threshold_db`` dBFS, the chain's trim threshold) marks its ``first_start_s``.
    """
    loud = np.flatnonzero(np.max(np.abs(recording), axis=1) >= 10.0 ** (threshold_db / 20.0))
    if loud.size == 0:
        return 0.0
    return max(float(loud[0]) / sample_rate - first_start_s, 0.0)


def _session_events(events: list[dict[str, Any]], session_id: str | None = None) -> list[dict[str, Any]]:
    """The events of one session: from its ``session_started`` (``session_id``, else the last one)
    to the next ``session_started``. A log without any gives all its events."""
    begun = [i for i, e in enumerate(events) if e["type"] == "session_started"]
    if session_id is not None:
        mine = [i for i in begun if events[i]["data"].get("session_id") == session_id]
        if not mine:
            raise RunError(f"the event log has no session_started of session {session_id}")
        begin = mine[-1]
    elif begun:
        begin = begun[-1]
    else:
        return events
    following = [i for i in begun if i > begin]
    return events[begin : following[0] if following else None]


def _read_span(path: Path, start_s: float = 0.0, stop_s: float | None = None) -> tuple[np.ndarray, int]:
    """``path`` from ``start_s`` to ``stop_s`` (a daemon's recording may hold hours; only the part
    asked for is read)."""
    if start_s <= 0 and stop_s is None:
        return read_audio(path)
    try:
        info = sf.info(os.fspath(path))
        start = min(round(start_s * info.samplerate), info.frames)
        stop = info.frames if stop_s is None else min(round(stop_s * info.samplerate), info.frames)
        audio, rate = sf.read(
            os.fspath(path), start=start, stop=max(start, stop), dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}") from exc
    if audio.shape[0] == 0:
        raise RunError(
            f"{path} holds no audio from {start_s:.1f} s on "
            f"(it is {info.frames / info.samplerate:.1f} s long)"
        )
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"audio file {path} holds non-finite samples")
    return audio, int(rate)


def _build_run(
    folder: Path,
    recording: Path,
    events: list[dict[str, Any]],
    events_path: Path,
    *,
    from_s: float = 0.0,
    until_s: float | None = None,
    session_id: str | None = None,
) -> Run:
    """The session whose ``events`` these are, in ``recording`` between ``from_s`` and ``until_s``
    (seconds of the file): it begins at its first sound there."""
    started = [e.get("data", {}) for e in events if e["type"] == "segment_started"]
    if not started:
        raise RunError(f"event log {events_path} has no segment_started events")
    plans = [
        e["data"]["plan"]
        for e in events
        if e["type"] in ("session_started", "plan_changed")
        and isinstance(e.get("data"), dict)
        and "plan" in e["data"]
    ]
    try:
        plan = Plan.from_dict(plans[-1]) if plans else None
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"malformed plan in the event log {events_path}: {exc!r}") from exc
    session, sr = _read_span(recording, from_s, until_s)
    clips = []
    try:
        # From here on, times are session times: the recording before the session is dropped.
        offset = session_offset(session, sr, float(started[0]["start_s"]))
        session = session[round(offset * sr) :]
        offset += from_s
        # After session_ended the idle daemon records silence: it is not part of the session.
        ended = [e["data"].get("played_s") for e in events if e["type"] == "session_ended"]
        if ended and isinstance(ended[-1], int | float) and ended[-1] > 0:
            session = session[: round(float(ended[-1]) * sr)]
        total_s = session.shape[0] / sr
        for i, data in enumerate(started):
            start = float(data["start_s"])
            end = float(started[i + 1]["start_s"]) if i + 1 < len(started) else total_s
            audio = session[round(start * sr) : round(min(end, total_s) * sr)]
            if audio.shape[0] == 0:
                continue
            clips.append(
                ClipRecord(
                    index=int(data["index"]),
                    planned=VA(float(data["valence"]), float(data["arousal"])),
                    mood=str(data.get("mood", "")),
                    prompt=str(data.get("prompt", "")),
                    start_s=start,
                    end_s=min(end, total_s),
                    audio=audio,
                    sample_rate=sr,
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"malformed segment_started event in {events_path}: {exc!r}") from exc
    if not clips:
        raise RunError(f"no segment of {events_path} lies within the recording {recording}")
    return Run("daemon", folder, tuple(clips), session, sr, plan, {}, offset, session_id, recording)


def load_recording(folder: Path, events_path: Path) -> Run:
    """Load a daemon recording and its event log (the last session of the log)."""
    recording = _first_existing(folder, RECORDING_NAMES)
    if recording is None:
        raise RunError(f"{folder} has an event log but no recording ({', '.join(RECORDING_NAMES)})")
    # The daemon appends to its log across sessions and restarts: the recording holds the last one.
    events = _session_events(read_events(events_path))
    started = [e for e in events if e["type"] == "session_started"]
    session_id = started[0]["data"].get("session_id") if started else None
    return _build_run(folder, recording, events, events_path, session_id=session_id)


# --- a session of the daemon's listening history ----------------------------------------------------


@dataclass(frozen=True)
class HistorySession:
    """What the listening history says of one session."""

    id: str
    started_at: float
    played_s: float | None
    recording: str | None
    recording_offset_s: float | None


def read_history(path: Path) -> list[HistorySession]:
    """Every session of a listening history, oldest first (read-only: the daemon may be writing)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id, started_at, played_s, recording, recording_offset_s"
                " FROM sessions ORDER BY started_at"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise RunError(f"cannot read the listening history {path}: {exc}") from exc
    return [HistorySession(*row) for row in rows]


def find_session(sessions: list[HistorySession], wanted: str) -> HistorySession:
    """The session whose id is ``wanted`` or begins with it (uniquely), as ``ctl history`` shows it."""
    exact = [s for s in sessions if s.id == wanted]
    found = exact or [s for s in sessions if s.id.startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if found:
        raise RunError(f"session {wanted!r} is ambiguous: {', '.join(s.id for s in found)}")
    raise RunError(
        f"no session {wanted!r} in the listening history (`musicmed-stream ctl history` lists them)"
    )


def _recording_of(
    folder: Path, entry: HistorySession, sessions: list[HistorySession]
) -> tuple[Path, float | None]:
    """The file that holds ``entry``'s audio, and where the next session begins in it (if it does).

    The file sink restarts its recording at 0 on rotation (the full file becomes ``NAME.1.SUFFIX``)
    and when the daemon starts again: sessions of one file follow each other with growing offsets,
    and a session whose offset is not above its predecessor's began a new file. Only the newest
    file is ``NAME``; the one before it is ``NAME.1`` if it was rotated (its last write falls
    between the last session it holds and the first of the next file), else it is gone."""
    named = Path(entry.recording or "")
    path = named if named.is_file() else folder / named.name  # a state folder copied elsewhere
    if not entry.recording or not path.is_file():
        raise RunError(
            f"the recording of session {entry.id} ({entry.recording or 'none recorded'}) is not there"
        )
    same = [s for s in sessions if s.recording == entry.recording and s.recording_offset_s is not None]
    files: list[list[HistorySession]] = []
    for s in same:
        if not files or s.recording_offset_s <= files[-1][-1].recording_offset_s:  # type: ignore[operator]
            files.append([])
        files[-1].append(s)
    where = next((i for i, f in enumerate(files) if entry in f), len(files) - 1)
    mine = files[where] if files else [entry]
    later = [s.recording_offset_s for s in mine if s.started_at > entry.started_at]
    until = min(later) if later else None
    if where == len(files) - 1:
        return path, until
    rotated = path.with_name(f"{path.stem}.1{path.suffix}")
    if where == len(files) - 2 and rotated.is_file():
        written = rotated.stat().st_mtime
        if mine[-1].started_at <= written <= files[where + 1][0].started_at + 1.0:
            return rotated, until
    raise RunError(
        f"the audio of session {entry.id} is no longer in {path}: the recording began anew after it "
        f"(the daemon restarted, or the file was rotated more than once)"
    )


def load_state_session(folder: Path, session: str | None = None) -> Run:
    """One session of a daemon state folder: ``session`` (an id, or the unique beginning of one),
    else the last one of the event log; its audio is the part of its recording that the history
    names (``recording``, ``recording_offset_s``), up to where the next session begins."""
    events_path = _first_existing(folder, ("events.jsonl", "events.json"))
    if events_path is None:
        raise RunError(f"{folder} has no event log (events.jsonl)")
    history = folder / HISTORY_FILE
    sessions = read_history(history) if history.is_file() else []
    events = read_events(events_path)
    if session is not None:
        if not sessions:
            raise RunError(f"--session needs the listening history {history}, which is not there")
        entry: HistorySession | None = find_session(sessions, session)
        assert entry is not None
        mine = _session_events(events, entry.id)
    else:
        mine = _session_events(events)
        started = [e for e in mine if e["type"] == "session_started"]
        sid = started[0]["data"].get("session_id") if started else None
        entry = next((s for s in sessions if s.id == sid), None)
        if entry is None or entry.recording_offset_s is None:
            return load_recording(folder, events_path)  # no history of it: the log's last session
    recording, until = _recording_of(folder, entry, sessions)
    return _build_run(
        folder,
        recording,
        mine,
        events_path,
        from_s=entry.recording_offset_s or 0.0,
        until_s=until,
        session_id=entry.id,
    )


def load_run(folder: str | Path, session: str | None = None) -> Run:
    """Load a render folder (``plan.json``), a daemon state folder (``events.jsonl`` and
    ``history.sqlite``: the session ``session``, else the last) or a daemon folder
    (``events.jsonl`` and a recording)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"run folder {folder} does not exist")
    if session is not None and not (folder / HISTORY_FILE).is_file():
        raise RunError(f"--session needs a daemon state folder with {HISTORY_FILE}; {folder} has none")
    if (folder / "plan.json").is_file():
        return load_render(folder)
    events = _first_existing(folder, ("events.jsonl", "events.json"))
    if events is not None and (folder / HISTORY_FILE).is_file():
        return load_state_session(folder, session)
    if events is not None:
        return load_recording(folder, events)
    raise RunError(f"{folder} is neither a render (plan.json) nor a daemon recording (events.jsonl)")
