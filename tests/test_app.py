"""Wiring: one engine and one set of planning inputs from a configuration, for serve and render."""

from __future__ import annotations

import json
from pathlib import Path

from musicmed_stream.app import build_engine, planning_inputs
from musicmed_stream.cli.main import main
from musicmed_stream.engines.musicgen.loading import AdapterInfo
from musicmed_stream.planner import PlanSettings, plan_session
from musicmed_stream.service.config import load_config


def test_the_chains_crossfade_reaches_the_built_in_engine() -> None:
    config = load_config(env={}, overrides={"chain.crossfade_fraction": 0.1, "engine.name": "builtin"})
    engine = build_engine(config)
    assert engine.overlap_fraction == 0.1  # the notes ring into the next clip over 0.1 of a clip
    none = build_engine(
        load_config(env={}, overrides={"engine.name": "builtin", "engine.builtin.soundfont": "none"})
    )
    assert none.voices == "synth"


class AdapterEngine:
    """An engine whose LoRA adapter says what it was trained with (the planner must listen)."""

    name, sample_rate, channels = "musicgen", 32000, 1

    def __init__(self, folder: Path) -> None:
        self.adapter_info = AdapterInfo(
            path=folder,
            tag_mapping={
                "tags": {
                    "blue": {"kind": "mood", "emotion": "sad"},
                    "sunny": {"kind": "mood", "emotion": "happy"},
                }
            },
            label_stats={
                "instruments": {"blue": {"cello": 9}, "sunny": {"ukulele": 7}},
                "genres": {"blue": {"blues": 5}, "sunny": {"reggae": 4}},
                "tracks": {"blue": 9, "sunny": 7},
            },
        )


def test_an_adapters_mapping_and_statistics_reach_the_planner(tmp_path: Path) -> None:
    statistics, mapping = planning_inputs(load_config(env={}), AdapterEngine(tmp_path))
    plan = plan_session(
        "sad", "happy", PlanSettings(minutes=2, clip_seconds=15, temperature=0), statistics, mapping=mapping
    )
    assert {s.mood for s in plan.segments} <= {"blue", "sunny"}
    assert {s.instrument for s in plan.segments} <= {"cello", "ukulele"}
    assert statistics.source == f"adapter {tmp_path}"
    # a mapping set in the configuration wins over the adapter's
    own = tmp_path / "mapping.json"
    own.write_text(json.dumps({"tags": {"grey": {"kind": "mood", "emotion": "sad"}}}))
    _, mapping = planning_inputs(
        load_config(env={}, overrides={"session.mapping": str(own)}), AdapterEngine(tmp_path)
    )
    assert mapping.get("grey") is not None and mapping.get("blue") is None


def test_render_with_a_config_file_builds_the_configured_musicgen(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.toml"
    missing = tmp_path / "no-such-model"
    config.write_text(
        f'[engine]\nname = "musicgen"\n[engine.musicgen]\nmodel = "{missing}"\n[session]\njamendo = ""\n'
    )
    argv = ["render", "--from", "sad", "--to", "calm", "--minutes", "0.2", "--clip-seconds", "4"]
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "\n" not in err.strip(), "the configured model, said in one line"
