"""The session MIDI file: every clip's notes on one timeline, written atomically with mido."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mido

from musicmed_stream.errors import AudioError, ConfigError

TICKS_PER_BEAT = 480
DEFAULT_TEMPO_BPM = 120.0
DRUM_CHANNEL = 9
MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)


def _check_note(note: dict[str, Any], where: str) -> tuple[float, float, int, int, int, int]:
    try:
        start, end = float(note["start"]), float(note["end"])
        pitch, velocity = int(note["pitch"]), int(note["velocity"])
        program, channel = int(note.get("program", 0)), int(note.get("channel", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: malformed note {note!r} ({exc})") from exc
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ConfigError(f"{where}: note times must be finite with end >= start, got {note!r}")
    if not (0 <= pitch <= 127 and 0 <= program <= 127 and 0 <= channel <= 15):
        raise ConfigError(f"{where}: pitch/program must be 0-127 and channel 0-15, got {note!r}")
    return start, end, pitch, min(127, max(1, velocity)), program, channel


def _part(channel: int, program: int) -> tuple[int, int]:
    """The track a note belongs to: the drum kit, or one melodic program (whatever its layer)."""
    return (DRUM_CHANNEL, 0) if channel == DRUM_CHANNEL else (-1, program)


def _assign_channels(parts: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """MIDI channel of each part: drums on channel 10 (index 9), one channel per program.

    Beyond 15 melodic programs, later parts share channels round-robin and switch program
    before each note.
    """
    assigned: dict[tuple[int, int], int] = {}
    melodic = 0
    for part in parts:
        if part[0] == DRUM_CHANNEL:
            assigned[part] = DRUM_CHANNEL
        else:
            assigned[part] = MELODIC_CHANNELS[melodic % len(MELODIC_CHANNELS)]
            melodic += 1
    return assigned


def session_midi(
    clips_notes: Sequence[tuple[float, Sequence[dict[str, Any]]]], tempo_bpm: float | None = None
) -> mido.MidiFile:
    """Build a type-1 MIDI file from ``[(clip_offset_s, notes), ...]`` (pure, no I/O).

    One track per General MIDI program (every note's ``channel`` 9 is the drum kit, on MIDI
    channel 10), named after it, with its program change; note times are clip offset plus note
    time, at ``tempo_bpm`` (120 if ``None``). Notes before the session start are clipped to 0.
    Overlapping notes of the same pitch on one track (e.g. a note replayed by the next clip) are
    merged.
    """
    bpm = DEFAULT_TEMPO_BPM if tempo_bpm is None else float(tempo_bpm)
    if not (math.isfinite(bpm) and 10.0 <= bpm <= 400.0):
        raise ConfigError(f"tempo_bpm must be within 10-400, got {tempo_bpm!r}")
    ticks_per_second = TICKS_PER_BEAT * bpm / 60.0
    parts: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for i, (offset, notes) in enumerate(clips_notes):
        if not math.isfinite(float(offset)):
            raise ConfigError(f"clip {i}: offset must be finite, got {offset!r}")
        for note in notes:
            start, end, pitch, velocity, program, channel = _check_note(note, f"clip {i}")
            on = max(0, round((offset + start) * ticks_per_second))
            off = max(on + 1, round((offset + end) * ticks_per_second))
            parts.setdefault(_part(channel, program), []).append((on, off, pitch, velocity))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    midi.tracks.append(conductor)
    channels = _assign_channels(sorted(parts, key=lambda p: min(n[0] for n in parts[p])))
    for part in sorted(parts, key=lambda p: channels[p]):
        channel = channels[part]
        track = mido.MidiTrack()
        name = "drums" if channel == DRUM_CHANNEL else f"program {part[1]}"
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        events: list[tuple[int, int, mido.Message]] = []
        program = mido.Message("program_change", channel=channel, program=part[1])
        shared = sum(1 for c in channels.values() if c == channel) > 1
        if channel != DRUM_CHANNEL and not shared:
            events.append((0, 0, program))
        for on, off, pitch, velocity in _merge(parts[part]):
            if shared and channel != DRUM_CHANNEL:  # more programs than channels: switch per note
                events.append((on, 2, program))
            events.append((on, 3, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
            events.append((off, 1, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        now = 0
        for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    return midi


def _merge(notes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Merge overlapping notes of the same pitch, so every note_on has its own note_off."""
    merged: list[tuple[int, int, int, int]] = []
    last: dict[int, int] = {}
    for on, off, pitch, velocity in sorted(notes):
        j = last.get(pitch)
        if j is not None and on < merged[j][1]:
            m_on, m_off, _, m_vel = merged[j]
            merged[j] = (m_on, max(m_off, off), pitch, m_vel)
            continue
        last[pitch] = len(merged)
        merged.append((on, off, pitch, velocity))
    return merged


def write_session_midi(
    path: str | os.PathLike[str],
    clips_notes: Sequence[tuple[float, Sequence[dict[str, Any]]]],
    tempo_bpm: float | None = None,
) -> Path:
    """Write the session's notes as a standard MIDI file at ``path`` (temp file + rename).

    Parameters
    ----------
    path : path-like
        Destination ``.mid`` file.
    clips_notes : sequence of (float, list of dict)
        Per clip: its start in the session (s) and its ``Clip.notes``.
    tempo_bpm : float, optional
        Tempo of the file's beat grid (120 if ``None``); note times in seconds are exact at any
        tempo.

    Raises
    ------
    ConfigError
        On a malformed note or tempo.
    AudioError
        If the file cannot be written.
    """
    midi = session_midi(clips_notes, tempo_bpm)
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise AudioError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            midi.save(file=handle)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise AudioError(f"cannot write {path}: {exc}") from exc
    return path
