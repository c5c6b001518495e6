"""End to end: evaluate rendered sessions and daemon recordings, the evaluate and compare commands."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from test_evaluation_support import SR, make_render_folder, music_for, render_builtin
from tiny_clap import make_tiny_clap

from musicmed_stream.audio_io import read_audio, write_audio
from musicmed_stream.cli.main import main
from musicmed_stream.evaluation import EvaluationOptions, evaluate_run, load_run
from musicmed_stream.evaluation.compare import percent_change
from musicmed_stream.evaluation.run import clip_offsets
from musicmed_stream.planner import PlanSettings, plan_session

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A 1-minute sad -> happy session of synthetic music that follows the plan."""
    plan = plan_session(
        "sad", "happy", PlanSettings(minutes=1, clip_seconds=10, match_clips=1, settle_clips=1)
    )
    return make_render_folder(tmp_path_factory.mktemp("synthetic"), plan)


def test_two_minute_builtin_session_end_to_end(tmp_path):
    plan = plan_session("sad", "calm", PlanSettings(minutes=2, clip_seconds=15))
    folder = render_builtin(tmp_path / "run", plan)
    metrics = evaluate_run(folder)
    # 15-s clips overlapping by 3.75 s: 10 clips play 116.25 s, the nearest to 2 minutes.
    assert metrics["run"]["clips"] == len(plan.segments) == 10
    assert [c["mood"] for c in metrics["clips"]] == [s.mood for s in plan.segments]
    for name in ("metrics.json", "evaluation.md", "eval_path.png", "eval_clips.png", "eval_loudness.png"):
        assert (folder / name).is_file(), name
    for name in ("eval_path.png", "eval_clips.png", "eval_loudness.png"):
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    comfort = metrics["comfort"]
    # The chain normalizes to -20 LUFS and limits to -1 dBTP; the evaluation must see that.
    assert comfort["integrated_lufs"] == pytest.approx(-20, abs=1.5)
    assert comfort["true_peak_dbtp"] <= -0.9
    assert comfort["clipped_samples"] == 0
    assert len(comfort["loudness_steps_lu"]) == 9
    rec = metrics["recognition"]
    assert rec["backend"] == "features"
    assert 0 <= rec["auprc"] <= 1 and 0 <= rec["hamming"] <= 1
    assert metrics["clap"] is None
    assert metrics["adherence"]["start_quadrant_planned"] == "-V-A"
    log = json.loads((folder / "render.json").read_text())
    assert metrics["speed"]["real_time_factor"] == pytest.approx(log["realtime_factor"])
    assert metrics["run"]["engine"] == "builtin"
    assert metrics["table"]["parameters"] == 0


def test_measured_path_follows_a_plan_made_of_matching_music(synthetic_run):
    metrics = evaluate_run(synthetic_run)
    adherence = metrics["adherence"]
    assert adherence["start_quadrant_correct"] and adherence["end_quadrant_correct"]
    assert adherence["spearman_arousal"] > 0.7
    assert adherence["spearman_valence"] > 0.5
    assert metrics["speed"]["real_time_factor"] == pytest.approx(50.0)
    assert metrics["speed"]["basis"] == "total"
    assert metrics["speed"]["engine_real_time_factor"] == pytest.approx(100.0)
    assert metrics["speed"]["minutes_per_15min_session"] == pytest.approx(15 / 50)
    assert metrics["comfort"]["clicks_s"] == []
    assert metrics["comfort"]["silent_gaps"] == []


def test_render_clip_places_cover_the_session(synthetic_run):
    run = load_run(synthetic_run)
    assert run.kind == "render"
    assert run.clips[0].start_s == 0
    assert run.clips[-1].end_s == pytest.approx(run.session.shape[0] / run.sample_rate)
    for a, b in zip(run.clips, run.clips[1:], strict=False):
        assert a.start_s < b.start_s < a.end_s  # adjacent clips overlap in the crossfade


def test_clip_offsets_follow_the_crossfade_rule():
    # Overlaps: a quarter of the shorter clip, 25 frames, then 10 frames.
    assert clip_offsets([100, 100, 40], 10) == [(0.0, 10.0), (7.5, 17.5), (16.5, 20.5)]


def test_clap_and_clap_zero_shot_on_a_run(synthetic_run, tmp_path):
    clap = make_tiny_clap(tmp_path / "clap")
    out = tmp_path / "eval"
    metrics = evaluate_run(
        synthetic_run, EvaluationOptions(clap=str(clap), mer="clap", report_format="html"), out
    )
    scores = metrics["clap"]["scores"]
    assert len(scores) == metrics["run"]["clips"]
    assert all(-100 <= s <= 100 for s in scores)
    assert metrics["clap"]["mean"] == pytest.approx(np.mean(scores))
    assert metrics["table"]["clap"] == metrics["clap"]["mean"]
    assert metrics["recognition"]["backend"] == "clap"
    assert (out / "evaluation.html").read_text().startswith("<!doctype html>")
    assert not (synthetic_run / "evaluation.html").exists()


def test_daemon_recording_with_event_log(tmp_path):
    # The synthetic recording lays the clips end to end: a chain without crossfades.
    settings = PlanSettings(minutes=0.5, clip_seconds=10, match_clips=1, settle_clips=1, crossfade_fraction=0)
    plan = plan_session("tired", "energetic", settings)
    clips = [music_for(s.valence, s.arousal, s.duration_s, seed=s.index) for s in plan.segments]
    idle = np.zeros((int(1.5 * SR), 2), dtype=np.float32)  # the sink recorded silence before the session
    # ... and after it, until the daemon was stopped
    write_audio(tmp_path / "musicmed-stream.wav", np.concatenate([idle, *clips, idle]), SR)
    # The log as `ctl follow --json` prints it: a reply line, then protocol event messages; an
    # earlier session logged before (the daemon appends to its log) is not in this recording.
    earlier = plan_session("happy", "sad", PlanSettings(minutes=0.5, clip_seconds=10))
    lines = [
        {"type": "event", "event": "session_started", "data": {"plan": earlier.to_dict()}},
        {"type": "event", "event": "segment_started", "data": {"index": 0, "start_s": 0.0}},
        {"subscribed": True},
        {"type": "event", "event": "session_started", "data": {"plan": plan.to_dict()}},
    ]
    lines += [
        {
            "type": "event",
            "event": "segment_started",
            "data": {
                "index": s.index,
                "valence": s.valence,
                "arousal": s.arousal,
                "emotion": s.emotion,
                "mood": s.mood,
                "prompt": s.prompt,
                "start_s": s.start_s,
            },
            "time": 1.0 + s.start_s,
        }
        for s in plan.segments
    ]
    lines.append({"type": "event", "event": "buffer_level", "data": {"seconds": 3.0}, "time": 2.0})
    played = sum(c.shape[0] for c in clips) / SR
    ended = {"reason": "finished", "played_s": played}
    lines.append({"type": "event", "event": "session_ended", "data": ended})
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    run = load_run(tmp_path)
    assert run.kind == "daemon"
    assert [c.index for c in run.clips] == [s.index for s in plan.segments]
    assert run.plan == plan
    # The first clip's first sample is its first sound only to within the -50 dBFS threshold.
    assert run.offset_s == pytest.approx(1.5, abs=0.01)
    assert [c.start_s for c in run.clips] == pytest.approx([s.start_s for s in plan.segments])
    assert run.session.shape[0] == pytest.approx(sum(c.shape[0] for c in clips), abs=0.01 * SR)
    assert run.clips[1].audio.shape[0] == pytest.approx(clips[1].shape[0], abs=0.01 * SR)
    metrics = evaluate_run(tmp_path)
    assert metrics["run"]["kind"] == "daemon"
    assert metrics["run"]["session_offset_s"] == pytest.approx(1.5, abs=0.01)
    assert metrics["speed"]["real_time_factor"] is None
    assert metrics["adherence"]["end_quadrant_planned"] == "+V+A"
    assert metrics["comfort"]["silent_gaps"] == []  # the idle time around the session is not a gap


def test_evaluate_and_compare_commands(synthetic_run, tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["evaluate", str(synthetic_run), "--out", str(first)]) == 0
    assert main(["evaluate", str(synthetic_run), "--out", str(second), "--top-k", "3"]) == 0
    capsys.readouterr()
    assert main(["compare", str(first), str(second), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    a = json.loads((first / "metrics.json").read_text())
    b = json.loads((second / "metrics.json").read_text())
    assert float(rows[1]["hamming"]) == pytest.approx(b["table"]["hamming"])
    expected = 100 * (b["table"]["hamming"] - a["table"]["hamming"]) / a["table"]["hamming"]
    assert float(rows[1]["hamming_change_pct"]) == pytest.approx(expected)
    assert rows[0]["hamming_change_pct"] == "0.0"
    # What a clinician looks at, from the evaluation itself: path adherence and comfort.
    assert float(rows[0]["spearman_arousal"]) == pytest.approx(a["adherence"]["spearman_arousal"])
    assert float(rows[0]["mean_distance"]) == pytest.approx(a["adherence"]["mean_distance"])
    assert float(rows[0]["integrated_lufs"]) == pytest.approx(a["comfort"]["integrated_lufs"])
    assert float(rows[0]["loudness_range_lu"]) == pytest.approx(a["comfort"]["loudness_range_lu"])
    assert float(rows[0]["true_peak_dbtp"]) == pytest.approx(a["comfort"]["true_peak_dbtp"])
    assert int(rows[0]["clicks"]) == len(a["comfort"]["clicks_s"]) == 0
    assert rows[1]["integrated_lufs_change"] == "0.0"  # the same audio: a difference, not a %
    assert "parameters" not in rows[0]  # a run without a known generator size
    assert main(["compare", str(first), str(second)]) == 0
    tables = capsys.readouterr().out.split("\n\n")
    assert len(tables) == 2
    assert tables[0].splitlines()[0] == "| run | CLAP | AUPRC | Hamming | min / 15-min session |"
    assert f"({expected:+.1f}%)" in tables[0]
    assert tables[1].splitlines()[0] == (
        "| run | ρ valence | ρ arousal | path distance | LUFS | LRA (LU) | max step (LU) | true peak (dBTP)"
        " | clicks |"
    )
    lufs = a["comfort"]["integrated_lufs"]
    assert f"| {lufs:.1f} (+0.0) |" in tables[1].splitlines()[3]
    assert "different" not in capsys.readouterr().err


def test_compare_shows_the_generator_size_only_when_known_and_not_zero(tmp_path, capsys):
    runs = {"builtin": 0, "musicgen": 300_000_000, "unknown": None}
    for name, parameters in runs.items():
        (tmp_path / name).mkdir()
        table = {"auprc": 0.5, "parameters": parameters}
        comfort = {"integrated_lufs": -20.0, "loudness_range_lu": 4.0, "clicks_s": [1.0, 2.5]}
        # A metrics.json written before the table carried the comfort figures: read from "comfort".
        (tmp_path / name / "metrics.json").write_text(json.dumps({"table": table, "comfort": comfort}))
    folders = [str(tmp_path / n) for n in runs]
    assert main(["compare", folders[0], folders[2]]) == 0
    out = capsys.readouterr().out
    assert "parameters" not in out and "ρ valence" not in out  # nothing known: no column
    assert "| LUFS | LRA (LU) | clicks |" in out and "| -20.0 (+0.0) | 4.0 (+0.0) | 2 (+0) |" in out
    assert main(["compare", *folders]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| min / 15-min session | parameters |")
    assert lines[3].endswith("| 300,000,000 |") and lines[4].endswith("| n/a |")


def test_compare_warns_when_runs_were_scored_differently(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    for out, table in ((first, {"mer": "features"}), (second, {"mer": "clap", "clap_model": "m"})):
        out.mkdir()
        (out / "metrics.json").write_text(json.dumps({"table": table | {"auprc": 0.5}}))
    assert main(["compare", str(first), str(second)]) == 0
    captured = capsys.readouterr()
    assert "different mood-recognition backends" in captured.err
    assert "| 0.5 (+0.0%) |" in captured.out
    assert "\n\n" not in captured.out  # no listening figures in either: one table


def test_percent_change():
    assert percent_change(12.0, 10.0) == pytest.approx(20.0)
    assert percent_change(8.0, -10.0) == pytest.approx(180.0)
    assert percent_change(None, 10.0) is None
    assert percent_change(1.0, 0.0) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "/nonexistent/run"], "does not exist"),
        (
            ["evaluate", "{run}", "--clap", "/nonexistent/clap"],
            "huggingface-cli download laion/larger_clap_music",
        ),
        (["evaluate", "{run}", "--mer", "nonsense"], "unknown --mer backend"),
        (["evaluate", "{run}", "--mer", "essentia"], "essentia:PATH"),
        (["evaluate", "{run}", "--mer", "essentia:/nonexistent"], "discogs-effnet-bs64-1.pb"),
        (["evaluate", "{run}", "--mer", "clap"], "--clap"),
        (["compare", "{empty}"], "no metrics.json"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, synthetic_run, tmp_path, capsys):
    args = [a.format(run=synthetic_run, empty=tmp_path) for a in args]
    before = sorted(p.name for p in synthetic_run.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert message in err
    assert sorted(p.name for p in synthetic_run.iterdir()) == before


def test_essentia_backend_without_the_library_says_so(synthetic_run, tmp_path, capsys):
    try:
        import essentia  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("essentia is installed here")
    for name in ("discogs-effnet-bs64-1.pb", "mtg_jamendo_moodtheme-discogs-effnet-1.pb"):
        (tmp_path / name).write_bytes(b"")
    assert (
        main(["evaluate", str(synthetic_run), "--mer", f"essentia:{tmp_path}", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "essentia-tensorflow" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unfinished_render_is_refused(synthetic_run, tmp_path, capsys):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "plan.json").write_text((synthetic_run / "plan.json").read_text())
    assert main(["evaluate", str(folder)]) == 2
    assert "session.wav" in capsys.readouterr().err
    audio, sr = read_audio(synthetic_run / "session.wav")
    write_audio(folder / "session.wav", audio, sr)
    assert main(["evaluate", str(folder)]) == 2
    assert "clip file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("events.jsonl", '{"type": "segment_started", "data": {}}\nnot json\n', "cannot parse event log"),
        ("events.jsonl", '{"type": "buffer_level", "data": {"seconds": 1}}\n', "no segment_started"),
        ("events.jsonl", '{"type": "segment_started", "data": {"index": 0}}\n', "malformed segment_started"),
        ("plan.json", '{"start": {"valence": 0}}', "is not a plan"),
    ],
)
def test_malformed_run_files_are_one_clear_line(name, text, message, tmp_path, capsys):
    write_audio(tmp_path / "recording.wav", music_for(0.0, 0.0, 2.0), SR)
    write_audio(tmp_path / "session.wav", music_for(0.0, 0.0, 2.0), SR)
    (tmp_path / name).write_text(text)
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert message in err
    assert not (tmp_path / "metrics.json").exists()
