"""``evaluate STATE_DIR [--session ID]``: one session of a daemon's state folder, found through its
listening history (which recording holds it, and where it begins) and its part of the event log.

A synthetic state folder is written with the daemon's own history writer
(:class:`musicmed_stream.service.history.History`); the last test plays two sessions on the real
daemon and evaluates each."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_evaluation_support import SR, music_for
from web.harness import running_daemon

from musicmed_stream.audio_io import read_audio, write_audio
from musicmed_stream.cli.main import main
from musicmed_stream.control.client import ControlClient
from musicmed_stream.evaluation import load_run
from musicmed_stream.evaluation.run import RunError, read_history
from musicmed_stream.planner import PlanSettings, plan_session
from musicmed_stream.planner.types import Plan
from musicmed_stream.service.history import HISTORY_FILE, History

FIRST, SECOND = "a1b2c3d4e5f6", "a1ff00998877"  # one beginning in common: "a1" is ambiguous
LATENCY_S = 0.4  # silence the sink records between a session's start and its first clip


def session_audio(plan: Plan) -> np.ndarray:
    """The clips of ``plan`` end to end (a chain without crossfades), after the start latency."""
    clips = [music_for(s.valence, s.arousal, s.duration_s, seed=s.index) for s in plan.segments]
    return np.concatenate([np.zeros((int(LATENCY_S * SR), 2), np.float32), *clips])


def daemon_events(session_id: str, plan: Plan, played_s: float) -> list[dict]:
    """What the daemon logs of one session (``service.event_log``: ``{"type", "data", "time"}``)."""
    events = [
        {"type": "session_started", "data": {"session_id": session_id, "plan": plan.to_dict()}, "time": 1.0}
    ]
    for s in plan.segments:
        data = {
            k: getattr(s, k) for k in ("index", "valence", "arousal", "emotion", "mood", "prompt", "start_s")
        }
        events.append({"type": "segment_started", "data": data, "time": 1.0 + s.start_s})
    events.append(
        {"type": "session_ended", "data": {"reason": "finished", "played_s": played_s}, "time": 9.0}
    )
    return events


def settings() -> PlanSettings:
    return PlanSettings(minutes=0.5, clip_seconds=10, match_clips=1, settle_clips=1, crossfade_fraction=0)


@pytest.fixture
def state_dir(tmp_path: Path) -> tuple[Path, dict[str, Plan]]:
    """A state folder after two sessions: tired -> energetic, then happy -> sad, recorded back to
    back into recording.wav (the daemon does not record while idle)."""
    state = tmp_path / "state"
    state.mkdir()
    plans = {
        FIRST: plan_session("tired", "energetic", settings()),
        SECOND: plan_session("happy", "sad", settings()),
    }
    history = History(state / HISTORY_FILE)
    audio, lines, offset = [], [], 0.0
    for n, (sid, plan) in enumerate(plans.items()):
        part = session_audio(plan)
        played = part.shape[0] / SR - LATENCY_S
        history.session_started(
            sid,
            start_label=plan.start_label,
            target_label=plan.target_label,
            start=(plan.start.valence, plan.start.arousal),
            target=(plan.target.valence, plan.target.arousal),
            planned_s=plan.duration_s,
            recording=str(state / "recording.wav"),
            recording_offset_s=offset,
            at=1000.0 + 100 * n,
        )
        history.session_ended(sid, played_s=played, reason="finished", at=1050.0 + 100 * n)
        audio.append(part)
        lines += daemon_events(sid, plan, played)
        offset += part.shape[0] / SR
    history.close()
    write_audio(state / "recording.wav", np.concatenate(audio), SR)
    (state / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return state, plans


def test_each_session_of_the_history_is_its_own_part_of_the_recording(state_dir) -> None:
    state, plans = state_dir
    first_length = session_audio(plans[FIRST]).shape[0] / SR
    for wanted, sid, begins in (("a1b2", FIRST, LATENCY_S), (SECOND, SECOND, first_length + LATENCY_S)):
        run = load_run(state, session=wanted)
        plan = plans[sid]
        assert run.session_id == sid
        assert [c.index for c in run.clips] == [s.index for s in plan.segments]
        assert [c.planned.valence for c in run.clips] == [s.valence for s in plan.segments]
        # It begins at its first sound after the history's offset, and ends where it ended.
        assert run.offset_s == pytest.approx(begins, abs=0.01)
        assert run.session.shape[0] / SR == pytest.approx(
            session_audio(plan).shape[0] / SR - LATENCY_S, abs=0.01
        )
        recording, _ = read_audio(state / "recording.wav")
        start = round(run.offset_s * SR)
        np.testing.assert_array_equal(run.session, recording[start : start + run.session.shape[0]])
    assert load_run(state).session_id == SECOND  # no --session: the last


def test_session_ids_that_do_not_name_one_session_are_one_clear_line(state_dir, tmp_path, capsys) -> None:
    state, _ = state_dir
    for args, words in (
        (["--session", "a1"], f"session 'a1' is ambiguous: {FIRST}, {SECOND}"),
        (["--session", "ffff"], "no session 'ffff' in the listening history (`musicmed-stream ctl history`"),
    ):
        assert main(["evaluate", str(state), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    (tmp_path / "plain").mkdir()
    assert main(["evaluate", str(tmp_path / "plain"), "--session", FIRST]) == 2
    assert "--session needs a daemon state folder with history.sqlite" in capsys.readouterr().err
    assert not (state / "evaluations").exists()


def test_a_rotated_recording_is_found_and_an_overwritten_one_is_said(state_dir) -> None:
    state, plans = state_dir
    recording, _ = read_audio(state / "recording.wav")
    first = session_audio(plans[FIRST]).shape[0]
    # The file sink rotated after the first session: it is recording.1.wav now, and the second
    # session begins a new recording.wav at 0.
    write_audio(state / "recording.1.wav", recording[:first], SR)
    write_audio(state / "recording.wav", recording[first:], SR)
    os.utime(state / "recording.1.wav", (1060.0, 1060.0))  # written last between the two sessions
    db = History(state / HISTORY_FILE)
    db._write("UPDATE sessions SET recording_offset_s = 0 WHERE id = ?", (SECOND,))
    db.close()
    assert [s.recording_offset_s for s in read_history(state / HISTORY_FILE)] == [0.0, 0.0]
    run = load_run(state, session=FIRST)
    assert run.recording == state / "recording.1.wav" and run.offset_s == pytest.approx(LATENCY_S, abs=0.01)
    assert load_run(state, session=SECOND).recording == state / "recording.wav"
    # No rotated file that fits (the daemon restarted and began the recording again): said, not guessed.
    os.utime(state / "recording.1.wav", (500.0, 500.0))
    with pytest.raises(RunError, match=f"the audio of session {FIRST} is no longer in"):
        load_run(state, session=FIRST)


def test_evaluate_a_session_of_the_state_folder(state_dir, capsys) -> None:
    state, plans = state_dir
    assert main(["evaluate", str(state), "--session", "a1b"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0].split() == ["session", FIRST]
    folder = state / "evaluations" / FIRST  # one report per session, the state folder left as it was
    assert f"in {folder}" in out.err
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["run"]["session_id"] == FIRST and metrics["run"]["kind"] == "daemon"
    assert metrics["run"]["recording"] == str(state / "recording.wav")
    assert metrics["run"]["clips"] == len(plans[FIRST].segments)
    assert metrics["adherence"]["start_quadrant_planned"] == "-V-A"  # tired
    assert not (state / "metrics.json").exists()


def test_two_sessions_of_the_real_daemon(tmp_path: Path, jamendo_dir: Path) -> None:
    async def play(client: ControlClient, start: str, target: str, seed: int) -> str:
        info = await client.start(start, target, minutes=0.3, clip_seconds=4, seed=seed)
        await client.wait_for_event("session_ended", timeout=120)
        return info["session_id"]

    async def scenario() -> list[str]:
        async with (
            running_daemon(tmp_path, jamendo_dir, speed=4.0) as running,
            await ControlClient.connect(running.server.url) as client,
        ):
            await client.subscribe(["session_ended"])
            return [await play(client, "sad", "calm", 1), await play(client, "happy", "tense", 2)]

    ids = asyncio.run(scenario())
    state = tmp_path / "state"
    entries = {s.id: s for s in read_history(state / HISTORY_FILE)}
    assert list(entries) == ids
    first, second = (entries[i] for i in ids)
    assert Path(first.recording) == tmp_path / "recording.wav" and first.recording_offset_s == 0
    # Nothing recorded while idle in between: the second session's part begins where the first
    # one's audio ends (played_s is the deck's count, a block or so off what the sink wrote).
    assert second.recording_offset_s == pytest.approx(first.played_s, abs=0.25)
    logged = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    plans = {e["data"]["session_id"]: e["data"]["plan"] for e in logged if e["type"] == "session_started"}
    for sid, entry in zip(ids, (first, second), strict=True):
        run = load_run(state, session=sid[:6])
        assert run.session_id == sid
        assert [(c.planned.valence, c.planned.arousal) for c in run.clips] == [
            (s["valence"], s["arousal"]) for s in plans[sid]["segments"]
        ]
        assert run.offset_s >= entry.recording_offset_s
        assert run.session.shape[0] / run.sample_rate == pytest.approx(entry.played_s, abs=0.25)
    # The first session's audio ends before the second's begins: neither hears the other.
    runs = [load_run(state, session=sid) for sid in ids]
    assert runs[0].offset_s + runs[0].session.shape[0] / runs[0].sample_rate <= runs[1].offset_s
