"""The session MIDI writer: read the file back with mido and check notes, programs and timing."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.engines.midi import write_session_midi
from musicmed_stream.errors import ConfigError


def read_notes(path: Path) -> list[tuple[float, float, int, int, int]]:
    """``(start_s, end_s, pitch, channel, program)`` of every note, from mido's own timing."""
    midi = mido.MidiFile(path)
    programs: dict[int, int] = {}
    sounding: dict[tuple[int, int], float] = {}
    notes = []
    now = 0.0
    for message in midi:  # iterating a MidiFile yields messages with delta times in seconds
        now += message.time
        if message.type == "program_change":
            programs[message.channel] = message.program
        elif message.type == "note_on" and message.velocity > 0:
            sounding[(message.channel, message.note)] = (now, programs.get(message.channel, 0))
        elif message.type in ("note_off", "note_on"):
            start, program = sounding.pop((message.channel, message.note))
            notes.append((start, now, message.note, message.channel, program))
    assert not sounding, "every note_on has its note_off"
    return sorted(notes)


def note(
    start: float, end: float, pitch: int, program: int = 0, channel: int = 0, velocity: int = 80
) -> dict:
    return {
        "start": start,
        "end": end,
        "pitch": pitch,
        "velocity": velocity,
        "program": program,
        "channel": channel,
    }


def test_notes_land_at_clip_offset_plus_note_time(tmp_path):
    path = tmp_path / "session.mid"
    clips = [
        (0.0, [note(0.0, 1.0, 60), note(0.5, 2.0, 64, program=48, channel=3)]),
        (22.5, [note(0.25, 0.75, 67), note(1.0, 1.1, 36, channel=9)]),
    ]
    assert write_session_midi(path, clips, tempo_bpm=90) == path
    got = read_notes(path)
    expected = [(0.0, 1.0, 60, 0), (0.5, 2.0, 64, 48), (22.75, 23.25, 67, 0), (23.5, 23.6, 36, None)]
    assert len(got) == len(expected)
    tick = 60.0 / 90 / mido.MidiFile(path).ticks_per_beat
    for (start, end, pitch, channel, program), (e_start, e_end, e_pitch, e_program) in zip(
        got, expected, strict=True
    ):
        assert pitch == e_pitch
        assert start == pytest.approx(e_start, abs=tick) and end == pytest.approx(e_end, abs=tick)
        if e_program is None:
            assert channel == 9  # General MIDI percussion channel
        else:
            assert program == e_program


def test_one_track_per_part_with_its_program(tmp_path):
    path = tmp_path / "s.mid"
    write_session_midi(path, [(0.0, [note(0, 1, 60, 0), note(0, 1, 48, 33, 2), note(1, 2, 72, 73)])])
    midi = mido.MidiFile(path)
    assert midi.type == 1
    programs = [[m.program for m in t if m.type == "program_change"] for t in midi.tracks[1:]]
    assert sorted(p for ps in programs for p in ps) == [0, 33, 73]
    assert all(len(ps) == 1 for ps in programs)
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(120)]


def test_overlapping_repeat_of_a_note_is_merged(tmp_path):
    path = tmp_path / "s.mid"
    write_session_midi(path, [(0.0, [note(0.0, 2.0, 60)]), (1.0, [note(0.0, 2.0, 60)])])
    got = read_notes(path)
    assert len(got) == 1 and got[0][:3] == pytest.approx((0.0, 3.0, 60))


def test_bad_note_is_an_error_and_leaves_the_old_file(tmp_path):
    path = tmp_path / "s.mid"
    write_session_midi(path, [(0.0, [note(0, 1, 60)])])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="pitch"):
        write_session_midi(path, [(0.0, [note(0, 1, 200)])])
    with pytest.raises(ConfigError, match="malformed"):
        write_session_midi(path, [(0.0, [{"start": 0.0}])])
    with pytest.raises(ConfigError, match="tempo"):
        write_session_midi(path, [(0.0, [note(0, 1, 60)])], tempo_bpm=0)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.mid"]  # no temporary file left behind


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 60),
            st.floats(0.01, 4),
            st.integers(21, 108),
            st.sampled_from([0, 24, 40, 48, 73]),
            st.integers(0, 2),
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda n: n[2],
    ),
    st.floats(40, 200),
)
def test_round_trip_keeps_every_note(tmp_path_factory, notes, bpm):
    path = tmp_path_factory.mktemp("midi") / "s.mid"
    write_session_midi(path, [(1.5, [note(s, s + d, p, prog, ch) for s, d, p, prog, ch in notes])], bpm)
    got = read_notes(path)
    tick = 60.0 / bpm / 480
    assert sorted((n[2], n[4]) for n in got) == sorted((p, prog) for _, _, p, prog, _ in notes)
    by_pitch = {n[2]: n for n in got}
    for s, d, p, _, _ in notes:
        assert by_pitch[p][0] == pytest.approx(1.5 + s, abs=tick)
        assert by_pitch[p][1] == pytest.approx(1.5 + s + d, abs=tick)


def test_more_programs_than_channels_switch_program_per_note(tmp_path):
    path = tmp_path / "s.mid"
    notes = [note(float(i), i + 0.5, 60 + i, program=i) for i in range(20)]
    write_session_midi(path, [(0.0, notes)])
    got = read_notes(path)
    assert [(n[2], n[4]) for n in got] == [(60 + i, i) for i in range(20)]


def test_one_program_on_two_layers_shares_one_track(tmp_path):
    path = tmp_path / "s.mid"
    write_session_midi(path, [(0.0, [note(0, 1, 72, 0, channel=0), note(0, 1, 48, 0, channel=1)])])
    midi = mido.MidiFile(path)
    assert len(midi.tracks) == 2  # conductor + one piano track
    assert [(n[2], n[4]) for n in read_notes(path)] == [(48, 0), (72, 0)]
