"""``musicmed-stream plan`` and ``emotions``: output and one-line errors."""

from __future__ import annotations

import json

import pytest

from musicmed_stream.cli.main import main
from musicmed_stream.emotion import resolve_state
from musicmed_stream.planner import Plan


def test_plan_prints_a_segment_table(capsys):
    assert main(["plan", "--from", "sad", "--to", "calm", "--minutes", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.strip()[:1].isdigit()]
    # 30-s clips crossfaded by 7.5 s start every 22.5 s: 8 clips play 187.5 s, 7 play 165 s, so 3
    # minutes are 8 clips; the last starts at 7 * 22.5 s.
    assert len(rows) == 8
    sad, _ = resolve_state("sad")
    assert rows[0].split()[:5] == ["0", "0:00.0", f"{sad.valence:.2f}", f"{sad.arousal:.2f}", "sad"]
    assert rows[-1].split()[:2] == ["7", "2:37.5"] and "calm" in rows[-1]
    assert "8 clips, 3:07.5" in out[0]


def test_plan_json_round_trips_and_honours_the_flags(capsys, jamendo_dir):
    argv = ["plan", "--from=-0.5,0.5", "--to", "relaxing", "--minutes", "2", "--clip-seconds", "20"]
    argv += [
        "--path",
        "arc",
        "--temperature",
        "0",
        "--seed",
        "7",
        "--match-clips",
        "1",
        "--settle-clips",
        "1",
    ]
    argv += ["--jamendo", str(jamendo_dir), "--json"]
    assert main(argv) == 0
    plan = Plan.from_json(capsys.readouterr().out)
    s = plan.settings
    assert (s.minutes, s.clip_seconds, s.path, s.temperature, s.seed) == (2, 20, "arc", 0, 7)
    # 20-s clips crossfaded by 5 s: 8 clips play 125 s, the nearest to 2 minutes (7 play 110 s).
    assert len(plan.segments) == 8 and plan.target_label == "relaxing"
    assert plan.duration_s == 125.0
    assert plan.segments[0].va == plan.start and plan.segments[1].va != plan.start
    assert plan.meta["statistics"] == str(jamendo_dir.resolve())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "sadd", "--to", "calm"], "unknown emotion 'sadd'"),
        (["--from", "sad", "--to", "christmas"], "theme"),
        (["--from", "sad", "--to", "2,0"], "outside the circumplex"),
        (["--from", "sad", "--to", "calm", "--minutes", "0"], "minutes"),
        (
            ["--from", "sad", "--to", "calm", "--minutes", "1", "--clip-seconds", "90"],
            "longer than the session",
        ),
        (["--from", "sad", "--to", "calm", "--temperature", "-1"], "temperature"),
        (["--from", "sad", "--to", "calm", "--jamendo", "/nonexistent"], "does not exist"),
        (["--from", "sad", "--to", "calm", "--mapping", "/nonexistent.json"], "cannot read"),
    ],
)
def test_bad_input_is_one_line_on_stderr(capsys, argv, message):
    assert main(["plan", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err


def test_plan_uses_a_user_mapping(tmp_path, capsys):
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"tags": {"blue": {"kind": "mood", "emotion": "sad"}}}))
    assert (
        main(
            ["plan", "--from", "blue", "--to", "happy", "--minutes", "1", "--mapping", str(mapping), "--json"]
        )
        == 0
    )
    plan = Plan.from_json(capsys.readouterr().out)
    assert {s.mood for s in plan.segments} == {"blue"}
    assert plan.meta["mapping"] == str(mapping.resolve())


def test_the_plan_grid_follows_the_chain_config(tmp_path):
    import argparse

    from musicmed_stream.cli.common import plan_from_args

    config = tmp_path / "config.toml"
    config.write_text("[chain]\ncrossfade_fraction = 0.5\n")
    args = argparse.Namespace(start="sad", target="calm", minutes=2.0, clip_seconds=20.0, config=None)
    assert plan_from_args(args).settings.crossfade_fraction == 0.25  # the chain's default
    args.config = str(config)
    plan = plan_from_args(args)
    # Overlaps of 10 s: a clip every 10 s; 11 clips play 120 s.
    assert plan.settings.crossfade_fraction == 0.5
    assert len(plan.segments) == 11 and plan.duration_s == 120.0


def test_emotions_lists_vocabulary_and_mapping(capsys):
    assert main(["emotions", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"calm", "sad", "happy"} <= {e["name"] for e in data["emotions"]}
    assert data["mapping"]["tags"]["christmas"] == {"kind": "theme"}
    assert main(["emotions"]) == 0
    out = capsys.readouterr().out
    assert "calm" in out and "christmas" in out and "theme" in out
