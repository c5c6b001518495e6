"""The clinical palette: excluded genres and instruments are never drawn, the rest keeps its weights."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from musicmed_stream.cli.common import add_plan_arguments, plan_from_args
from musicmed_stream.cli.main import main
from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import ConfigError
from musicmed_stream.planner import (
    Plan,
    PlanSettings,
    StatisticsError,
    TagStatistics,
    builtin_palette,
    load_jamendo_statistics,
    plan_session,
    replan,
)
from musicmed_stream.planner.orchestration import SKIPPED_INSTRUMENTS, draw, palette_counts
from musicmed_stream.planner.statistics import JAMENDO_GENRES, JAMENDO_INSTRUMENTS
from musicmed_stream.planner.types import DEFAULT_EXCLUDE_GENRES, DEFAULT_EXCLUDE_INSTRUMENTS
from musicmed_stream.service.config import SessionSettings, load_config

HEAVY_ROCK = {"metal", "hardrock", "hard", "punkrock", "grunge"}


@pytest.fixture(scope="module")
def jamendo(jamendo_dir: Path) -> TagStatistics:
    return load_jamendo_statistics(jamendo_dir)


def genres_of(plan: Plan) -> set[str]:
    return {s.genre for s in plan.segments}


# --- the default ---------------------------------------------------------------------------------


def test_the_default_excludes_the_heavy_rock_tags_the_dataset_has_and_no_instrument(jamendo):
    assert set(DEFAULT_EXCLUDE_GENRES) == HEAVY_ROCK and DEFAULT_EXCLUDE_INSTRUMENTS == ()
    assert PlanSettings().exclude_genres == DEFAULT_EXCLUDE_GENRES
    # Every default name is a real tag of the metadata, and the built-in tag lists are the dataset's.
    assert jamendo.tags("genre") >= HEAVY_ROCK
    assert jamendo.tags("genre") == JAMENDO_GENRES
    assert jamendo.tags("instrument") == JAMENDO_INSTRUMENTS
    # The dataset has no distorted-guitar tag; the (clean) electric guitar stays drawable.
    assert not any("distort" in tag for tag in JAMENDO_INSTRUMENTS)
    assert "electricguitar" not in DEFAULT_EXCLUDE_INSTRUMENTS


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.0, 5.0])
def test_a_heavy_session_never_draws_an_excluded_genre(jamendo, temperature):
    # 'heavy' is the mood whose top genre on MTG-Jamendo is metal; 'angry' passes through it too.
    assert max(jamendo.genre_counts("heavy"), key=jamendo.genre_counts("heavy").get) == "metal"
    for seed in range(25):
        for start, target in (("heavy", "heavy"), ("angry", "calm"), ("fast", "powerful")):
            settings = PlanSettings(minutes=6, temperature=temperature, seed=seed, path="arc")
            plan = plan_session(start, target, settings, jamendo)
            assert not genres_of(plan) & HEAVY_ROCK, (start, target, seed)


def test_no_mood_of_the_dataset_offers_an_excluded_genre(jamendo):
    exclude = frozenset(HEAVY_ROCK)
    for mood in jamendo.genres:
        assert not set(palette_counts(jamendo, mood, "genre", exclude)) & exclude, mood


def test_emptied_lists_bring_the_excluded_genres_back(jamendo):
    open_palette = {"exclude_genres": (), "exclude_instruments": ()}
    # At temperature 0 the mode of 'heavy' is metal again.
    plan = plan_session("heavy", "heavy", PlanSettings(minutes=3, temperature=0, **open_palette), jamendo)
    assert genres_of(plan) == {"metal"}
    drawn: set[str] = set()
    for seed in range(10):
        settings = PlanSettings(minutes=6, temperature=1.0, seed=seed, **open_palette)
        drawn |= genres_of(plan_session("heavy", "heavy", settings, jamendo))
    assert "metal" in drawn
    # "" from a flag or an environment variable is the same empty list.
    assert PlanSettings(exclude_genres="").exclude_genres == ()


def test_the_remaining_weights_are_the_dataset_counts(jamendo):
    exclude = frozenset(HEAVY_ROCK)
    raw = jamendo.genre_counts("heavy")
    kept = palette_counts(jamendo, "heavy", "genre", exclude)
    assert kept == {tag: count for tag, count in raw.items() if tag not in exclude}
    assert sum(raw.values()) > sum(kept.values())  # something was excluded
    # At temperature 1 the draws follow the counts that are left, renormalised.
    rng = np.random.default_rng(0)
    n = 20000
    seen = Counter(draw(kept, 1.0, rng) for _ in range(n))
    total = sum(kept.values())
    for tag, count in kept.items():
        p = count / total
        assert abs(seen[tag] / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9, tag
    assert not set(seen) & exclude
    # Instruments: the skipped non-sources and the excluded ones both go, the rest keeps its counts.
    counts = palette_counts(jamendo, "heavy", "instrument", frozenset({"electricguitar"}))
    expected = jamendo.instrument_counts("heavy")
    assert counts == {t: c for t, c in expected.items() if t not in SKIPPED_INSTRUMENTS | {"electricguitar"}}


def test_an_excluded_instrument_is_never_drawn(jamendo):
    for seed in range(10):
        settings = PlanSettings(
            minutes=6, temperature=2.0, seed=seed, exclude_instruments=("piano", "guitar")
        )
        plan = plan_session("sad", "happy", settings, jamendo)
        assert not {s.instrument for s in plan.segments} & {"piano", "guitar"}


# --- fallbacks -----------------------------------------------------------------------------------

ONLY_METAL = TagStatistics(
    instruments={"heavy": {"electricguitar": 5}, "glum": {"piano": 3}},
    genres={"heavy": {"metal": 9}, "glum": {"punkrock": 4}, "calm": {"ambient": 2}},
    source="test",
)


def test_a_mood_left_with_nothing_falls_back_to_the_builtin_group_then_to_all_moods():
    exclude = frozenset(HEAVY_ROCK)
    # 'heavy' is in the built-in palette's tense group: its genres less metal.
    tense = {t: c for t, c in builtin_palette().genre_counts("heavy").items() if t != "metal"}
    assert palette_counts(ONLY_METAL, "heavy", "genre", exclude) == tense
    # 'glum' is no built-in mood: the counts over all moods of the statistics, less the exclusions.
    assert palette_counts(ONLY_METAL, "glum", "genre", exclude) == {"ambient": 2}
    plan = plan_session("heavy", "heavy", PlanSettings(minutes=3, temperature=1.0), ONLY_METAL)
    assert genres_of(plan) <= set(tense) and {s.instrument for s in plan.segments} == {"electricguitar"}


def test_lists_that_exclude_everything_are_a_clear_error():
    everything = tuple(sorted(JAMENDO_GENRES))
    with pytest.raises(StatisticsError, match="exclude_genres leaves no genre to draw for mood"):
        plan_session("sad", "calm", PlanSettings(minutes=2, exclude_genres=everything))


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exclude_genres": ("metall",)}, r"exclude_genres: 'metall' is not a known MTG-Jamendo genre tag"),
        ({"exclude_genres": ("heavymetal",)}, "exclude_genres: 'heavymetal'"),
        ({"exclude_instruments": ("distortedguitar",)}, "exclude_instruments: 'distortedguitar'"),
        ({"exclude_instruments": ("metal",)}, "exclude_instruments: 'metal'"),  # a genre, not an instrument
        ({"exclude_genres": 5}, "exclude_genres must be a list"),
        ({"exclude_genres": (3,)}, "exclude_genres must be a list"),
    ],
)
def test_an_unknown_name_is_a_config_error_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_session("sad", "calm", PlanSettings(minutes=2, **kwargs))


def test_a_spelling_variant_and_a_tag_of_the_statistics_are_known(jamendo):
    # 'punk' is the dataset's variant of 'punkrock' (tag_map.json).
    plan = plan_session(
        "heavy", "heavy", PlanSettings(minutes=3, temperature=0, exclude_genres=("metal", "punk"))
    )
    assert plan.settings.exclude_genres == ("metal", "punk")
    own = TagStatistics(
        {"sad": {"theremin": 3, "piano": 1}}, {"sad": {"sadcore": 2, "folk": 1}}, source="own"
    )
    settings = PlanSettings(
        minutes=2, temperature=0, exclude_genres=("sadcore",), exclude_instruments=("theremin",)
    )
    plan = plan_session("sad", "sad", settings, own)
    assert {(s.instrument, s.genre) for s in plan.segments} == {("piano", "folk")}


# --- plans, re-plans, JSON -----------------------------------------------------------------------


def test_the_lists_travel_with_the_plan_and_a_replan_keeps_them(jamendo):
    plan = plan_session("calm", "calm", PlanSettings(minutes=6, temperature=2.0, seed=2), jamendo)
    again = Plan.from_json(plan.to_json())
    assert again.settings == plan.settings and again.settings.exclude_genres == DEFAULT_EXCLUDE_GENRES
    for step in range(10):  # heavier and heavier re-plans, each continuing the one before
        again = replan(again, 1 + step, VA(-0.3 - 0.03 * step, 0.5 + 0.04 * step), "heavy", jamendo)
        assert not genres_of(again) & HEAVY_ROCK
    assert again.segments[-1].mood == "heavy"
    # An old plan file without the lists gets the default palette.
    data = plan.to_dict()
    del data["settings"]["exclude_genres"], data["settings"]["exclude_instruments"]
    assert Plan.from_dict(data).settings.exclude_genres == DEFAULT_EXCLUDE_GENRES


def test_a_replan_does_not_continue_an_excluded_genre(jamendo):
    open_plan = plan_session(
        "heavy", "heavy", PlanSettings(minutes=3, temperature=0, exclude_genres=()), jamendo
    )
    assert genres_of(open_plan) == {"metal"}
    # The same plan, its palette closed again (a daemon reloaded with the default lists).
    closed = replace(open_plan, settings=replace(open_plan.settings, exclude_genres=DEFAULT_EXCLUDE_GENRES))
    new = replan(closed, 2, open_plan.segments[2].va, "heavy", jamendo)
    assert [s.genre for s in new.segments[:2]] == ["metal", "metal"]  # already played: kept
    assert not {s.genre for s in new.segments[2:]} & HEAVY_ROCK


# --- command line --------------------------------------------------------------------------------


def run_plan(capsys, *flags: str, jamendo_dir: Path) -> Plan:
    argv = ["plan", "--from", "heavy", "--to", "heavy", "--minutes", "3", "--temperature", "0"]
    assert main([*argv, "--jamendo", str(jamendo_dir), "--json", *flags]) == 0
    return Plan.from_json(capsys.readouterr().out)


def test_plan_flags_set_and_empty_the_lists(capsys, jamendo_dir):
    plan = run_plan(capsys, jamendo_dir=jamendo_dir)
    assert plan.settings.exclude_genres == DEFAULT_EXCLUDE_GENRES and not genres_of(plan) & HEAVY_ROCK
    plan = run_plan(capsys, "--exclude-genres", "", jamendo_dir=jamendo_dir)
    assert plan.settings.exclude_genres == () and genres_of(plan) == {"metal"}
    plan = run_plan(
        capsys,
        "--exclude-genres",
        "metal, rock",
        "--exclude-instruments=electricguitar",
        jamendo_dir=jamendo_dir,
    )
    assert plan.settings.exclude_genres == ("metal", "rock")
    assert plan.settings.exclude_instruments == ("electricguitar",)
    assert not genres_of(plan) & {"metal", "rock"}
    assert "electricguitar" not in {s.instrument for s in plan.segments}
    # The table says what is never drawn.
    assert main(["plan", "--from", "sad", "--to", "calm", "--minutes", "2", "--exclude-instruments", ""]) == 0
    out = capsys.readouterr().out
    assert "never drawn: genres metal, hardrock, hard, punkrock, grunge; instruments none" in out


def test_a_bad_flag_name_is_one_line_on_stderr(capsys):
    assert main(["plan", "--from", "sad", "--to", "calm", "--exclude-genres", "metal,polka"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "exclude_genres: 'polka'" in lines[0]


def render_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_plan_arguments(parser)
    return parser.parse_args(["--from", "heavy", "--to", "heavy", "--minutes", "2", *argv])


def test_render_takes_the_palette_of_its_config_file_unless_the_flags_say_otherwise(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[chain]\ncrossfade_fraction = 0.5\n[session]\nexclude_genres = []\nfrom = "sad"\n')
    plan = plan_from_args(render_args("--chain-config", str(config)))
    assert plan.settings.exclude_genres == () and plan.settings.crossfade_fraction == 0.5
    plan = plan_from_args(render_args("--chain-config", str(config), "--exclude-genres", "rock"))
    assert plan.settings.exclude_genres == ("rock",)
    # No [session] lists in the file: the default palette.
    config.write_text("[chain]\ncrossfade_fraction = 0.5\n")
    assert plan_from_args(render_args("--chain-config", str(config))).settings.exclude_genres == (
        DEFAULT_EXCLUDE_GENRES
    )
    config.write_text('[session]\nexclude_genres = "metal"\n')
    with pytest.raises(ConfigError, match=r"session\.exclude_genres = 'metal': Input should be a valid list"):
        plan_from_args(render_args("--chain-config", str(config)))
    config.write_text('[session]\nexclude_instruments = ["fuzzbox"]\n')
    with pytest.raises(ConfigError, match="exclude_instruments: 'fuzzbox'"):
        plan_from_args(render_args("--chain-config", str(config)))


# --- configuration and daemon --------------------------------------------------------------------


def test_the_config_default_is_the_planner_default_and_can_be_overridden(tmp_path):
    assert tuple(SessionSettings().exclude_genres) == DEFAULT_EXCLUDE_GENRES
    assert tuple(load_config(env={}).session.exclude_instruments) == DEFAULT_EXCLUDE_INSTRUMENTS
    path = tmp_path / "config.toml"
    path.write_text('[session]\nexclude_genres = ["metal", "punk"]\nexclude_instruments = ["drums"]\n')
    session = load_config(path, env={}).session
    assert (session.exclude_genres, session.exclude_instruments) == (["metal", "punk"], ["drums"])
    assert load_config(path, env={"MUSICMED_SESSION_EXCLUDE_GENRES": ""}).session.exclude_genres == []
    path.write_text('[session]\nexclude_genres = ["metal", "speedmetal"]\n')
    with pytest.raises(ConfigError, match=r"session\.exclude_genres: 'speedmetal' is not a known"):
        load_config(path, env={})


def test_the_daemon_plans_and_replans_within_the_configured_palette(tmp_path, jamendo_dir):
    from test_service_daemon import make_daemon, run_with

    from musicmed_stream.control.api import StartOptions

    daemon = make_daemon(
        tmp_path,
        **{"session.jamendo": str(jamendo_dir), "session.exclude_genres": [], "session.temperature": 0},
    )

    async def body(d, queue):
        info = await d.start_session(StartOptions("heavy", "heavy"))
        # A reload that puts the default palette back applies to the re-plan.
        palette = d.config.session.replace(exclude_genres=list(DEFAULT_EXCLUDE_GENRES))
        d.reconfigure(d.config.replace(session=palette))
        changed = await d.set_target("heavy")
        await d.stop(0.05)
        return info, changed

    (info, changed), _ = run_with(daemon, body)
    assert {s["genre"] for s in info.plan["segments"]} == {"metal"}
    assert json.loads(json.dumps(info.plan["settings"]))["exclude_genres"] == []
    replanned = changed.plan["segments"]
    start = changed.plan["meta"]["replans"][-1]["from_index"]
    assert replanned and not {s["genre"] for s in replanned[start:]} & HEAVY_ROCK
    assert json.loads(json.dumps(changed.plan["settings"]))["exclude_genres"] == list(DEFAULT_EXCLUDE_GENRES)
