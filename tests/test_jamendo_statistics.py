"""Instrument and genre statistics per mood, read from the MTG-Jamendo metadata."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter

import pytest

from musicmed_stream.planner import PlanSettings, StatisticsError, load_jamendo_statistics, plan_session
from musicmed_stream.planner.statistics import builtin_palette


def _tracks_with(path, prefix: str, tag_map: dict[str, str]) -> dict[str, set[str]]:
    """TRACK_ID -> cleaned tags of one category, read with the csv module."""
    out: dict[str, set[str]] = {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        for row in reader:
            tags = {t.removeprefix(prefix) for t in row[5:] if t.startswith(prefix)}
            out.setdefault(row[0], set()).update(tag_map.get(t, t) for t in tags)
    return out


@pytest.fixture(scope="module")
def statistics(jamendo_dir):
    return load_jamendo_statistics(jamendo_dir)


@pytest.mark.parametrize("mood", ["sad", "calm", "energetic"])
def test_counts_agree_with_an_independent_count(jamendo_dir, statistics, mood):
    tag_map = json.loads((jamendo_dir / "tag_map.json").read_text())
    moods = _tracks_with(jamendo_dir / "autotagging_moodtheme.tsv", "mood/theme---", tag_map["mood/theme"])
    tracks = {t for t, tags in moods.items() if mood in tags}
    for category, name, table in (
        ("instrument", "autotagging_instrument.tsv", statistics.instruments),
        ("genre", "autotagging_genre.tsv", statistics.genres),
    ):
        per_track = _tracks_with(jamendo_dir / name, f"{category}---", tag_map[category])
        expected = Counter(tag for t in tracks & per_track.keys() for tag in per_track[t])
        assert table[mood] == dict(expected)
    assert statistics.source == str(jamendo_dir.resolve())


def test_statistics_cover_the_moods_and_look_plausible(statistics):
    assert len(statistics.instruments) == 59
    top = max(statistics.instrument_counts("sad").items(), key=lambda kv: kv[1])[0]
    assert top == "piano"
    calm = statistics.genre_counts("calm")
    assert calm["ambient"] > calm.get("metal", 0)


def test_unknown_moods_fall_back_to_all_moods(statistics):
    overall = statistics.instrument_counts("no-such-mood")
    assert overall["piano"] == sum(c.get("piano", 0) for c in statistics.instruments.values())


@pytest.mark.parametrize(
    "missing", ["autotagging_moodtheme.tsv", "autotagging_instrument.tsv", "autotagging_genre.tsv"]
)
def test_an_incomplete_folder_names_the_missing_file(jamendo_dir, tmp_path, missing):
    for name in ("autotagging_moodtheme.tsv", "autotagging_instrument.tsv", "autotagging_genre.tsv"):
        if name != missing:
            (tmp_path / name).write_text("TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n")
    with pytest.raises(StatisticsError, match=missing):
        load_jamendo_statistics(tmp_path)
    with pytest.raises(StatisticsError, match="does not exist"):
        load_jamendo_statistics(tmp_path / "nowhere")


def test_tag_map_cleanup_is_applied(tmp_path):
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
    (tmp_path / "autotagging_moodtheme.tsv").write_text(header + "t1\ta\tb\tp\t1.0\tmood/theme---sadness\r\n")
    (tmp_path / "autotagging_instrument.tsv").write_text(
        header
        + "t1\ta\tb\tp\t1.0\tinstrument---synth\tinstrument---synthesizer\r\n"
        + "t1\ta\tb\tp\t1.0\tinstrument---synth\r\n"  # the same track again
    )
    (tmp_path / "autotagging_genre.tsv").write_text(header + "t1\ta\tb\tp\t1.0\tgenre---ambiente\r\n")
    (tmp_path / "tag_map.json").write_text(
        json.dumps(
            {
                "mood/theme": {"sadness": "sad"},
                "instrument": {"synth": "synthesizer"},
                "genre": {"ambiente": "ambient"},
            }
        )
    )
    stats = load_jamendo_statistics(tmp_path)
    assert stats.instruments == {"sad": {"synthesizer": 1}}  # a tag, its variant and a repeat count once
    assert stats.genres == {"sad": {"ambient": 1}}
    assert stats.tracks == {"sad": 1}


def test_plans_draw_from_the_jamendo_statistics(jamendo_dir, statistics):
    plan = plan_session("sad", "happy", PlanSettings(minutes=3, temperature=0), statistics)
    first = plan.segments[0]
    counts = {
        k: v
        for k, v in statistics.instrument_counts(first.mood).items()
        if k not in {"voice", "computer", "sampler"}
    }
    assert first.instrument == max(sorted(counts), key=counts.get)
    assert plan.meta["statistics"] == statistics.source


def test_the_builtin_palette_covers_every_mood_tag_of_the_default_mapping():
    from musicmed_stream.emotion import load_tag_mapping

    palette = builtin_palette()
    for entry in load_tag_mapping().mood_entries:
        assert palette.instruments[entry.tag] and palette.genres[entry.tag]


def test_copy_of_the_folder_gives_the_same_counts(jamendo_dir, tmp_path, statistics):
    for name in (
        "autotagging_moodtheme.tsv",
        "autotagging_instrument.tsv",
        "autotagging_genre.tsv",
        "tag_map.json",
    ):
        shutil.copy(jamendo_dir / name, tmp_path / name)
    copy = load_jamendo_statistics(tmp_path)
    assert copy.instruments == statistics.instruments and copy.genres == statistics.genres


def test_a_file_without_the_dataset_header_is_refused(tmp_path):
    for name in ("autotagging_moodtheme.tsv", "autotagging_instrument.tsv", "autotagging_genre.tsv"):
        (tmp_path / name).write_text("id,tags\n1,sad\n")
    with pytest.raises(StatisticsError, match="header"):
        load_jamendo_statistics(tmp_path)
