"""Emotion vocabulary, MTG-Jamendo tag mapping, state resolution and the circumplex plot."""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.emotion import (
    MappingError,
    load_tag_mapping,
    load_vocabulary,
    mood_tag_for,
    nearest_emotion,
    norms,
    resolve_state,
)
from musicmed_stream.emotion.norms import AxisStatistics, to_circumplex, vocabulary_statistics
from musicmed_stream.emotion.plot import plot_circumplex
from musicmed_stream.emotion.vocabulary import VocabularyError
from musicmed_stream.errors import MusicMedError, UnknownEmotionError
from musicmed_stream.planner import VA

REQUIRED = [
    *("happy", "excited", "tense", "angry", "afraid", "anxious", "distressed", "sad", "depressed", "bored"),
    *("tired", "sleepy", "calm", "relaxed", "serene", "content", "peaceful", "hopeful", "energetic"),
]
THEMES = [
    *("christmas", "corporate", "film", "movie", "documentary", "game", "sport", "trailer", "advertising"),
    *("commercial", "holiday", "travel", "nature", "space", "children", "summer"),
]
coordinate = st.floats(-1.0, 1.0, allow_nan=False)


def raw_vocabulary() -> list[dict]:
    path = Path(__file__).parents[1].joinpath("musicmed_stream/data/emotions.json")
    return json.loads(path.read_text())["emotions"]


def test_vocabulary_has_the_required_emotions_placed_from_the_warriner_norms():
    vocabulary = load_vocabulary()
    names = [e.name for e in vocabulary]
    assert len(names) >= 28 and len(set(names)) == len(names)
    assert set(REQUIRED) <= set(names)
    entries = raw_vocabulary()
    stats = vocabulary_statistics(entries)
    for entry in entries:
        # The stored coordinates are the transform of the stored 1-9 norms.
        expected = to_circumplex(entry["raw_valence"], entry["raw_arousal"], stats)
        assert (entry["valence"], entry["arousal"]) == pytest.approx(expected, abs=1e-4)
        assert "Warriner" in entry["source"] or "Glasgow" in entry["source"]


# Russell's (1980) reference words and the band each must reach on the circle.
HIGH_AROUSAL = ("afraid", "terrified", "angry", "furious", "tense", "anxious", "excited", "energetic")
LOW_AROUSAL = ("calm", "relaxed", "sleepy", "tired", "tranquil")
PLEASANT = ("happy", "joyful", "excited", "delighted")
UNPLEASANT = ("sad", "depressed", "miserable", "lonely")


def _in_bands(va: dict[str, VA], margin: float = 0.0) -> bool:
    return (
        all(va[n].arousal >= 0.5 + margin for n in HIGH_AROUSAL)
        and all(va[n].arousal <= -0.5 - margin for n in LOW_AROUSAL)
        and all(va[n].valence >= 0.6 + margin for n in PLEASANT)
        and all(va[n].valence <= -0.6 - margin for n in UNPLEASANT)
    )


def test_coordinates_span_the_circle_in_russells_bands():
    va = {e.name: e.va for e in load_vocabulary()}
    for name in HIGH_AROUSAL:
        assert va[name].arousal >= 0.5, name
    for name in LOW_AROUSAL:
        assert va[name].arousal <= -0.5, name
    for name in PLEASANT:
        assert va[name].valence >= 0.6, name
    for name in UNPLEASANT:
        assert va[name].valence <= -0.6, name
    assert _in_bands(va, margin=0.02)
    assert all(math.hypot(p.valence, p.arousal) <= 1.0 for p in va.values())


def test_the_gains_are_the_gentlest_that_reach_the_bands_with_a_margin(monkeypatch):
    entries = raw_vocabulary()
    stats = vocabulary_statistics(entries)

    def placed() -> dict[str, VA]:
        return {e["name"]: VA(*to_circumplex(e["raw_valence"], e["raw_arousal"], stats)) for e in entries}

    assert _in_bands(placed(), margin=0.02)
    # A gain 0.01 gentler on either axis misses the 0.02 margin.
    for gain in ("GAIN_VALENCE", "GAIN_AROUSAL"):
        with monkeypatch.context() as patch:
            patch.setattr(norms, gain, getattr(norms, gain) + 0.01)
            assert not _in_bands(placed(), margin=0.02), gain


def test_transform_keeps_every_words_order_on_both_axes():
    entries = raw_vocabulary()
    for raw, key in (("raw_valence", "valence"), ("raw_arousal", "arousal")):
        for a, b in itertools.combinations(entries, 2):
            if a[raw] < b[raw]:
                assert a[key] < b[key], (a["name"], b["name"], key)
            elif a[raw] == b[raw]:
                assert a[key] == b[key]


@given(valence=st.floats(1.0, 9.0), arousal=st.floats(1.0, 9.0))
def test_any_rating_lands_inside_the_unit_circle(valence, arousal):
    v, a = to_circumplex(valence, arousal, vocabulary_statistics(raw_vocabulary()))
    assert math.hypot(v, a) <= 1.0


@pytest.mark.parametrize(
    ("name", "valence_sign", "arousal_sign"),
    [
        ("happy", 1, 1),
        ("excited", 1, 1),
        ("energetic", 1, 1),
        ("angry", -1, 1),
        ("afraid", -1, 1),
        ("tense", -1, 1),
        ("anxious", -1, 1),
        ("sad", -1, -1),
        ("depressed", -1, -1),
        ("bored", -1, -1),
        ("tired", -1, -1),
        ("calm", 1, -1),
        ("relaxed", 1, -1),
        ("serene", 1, -1),
        ("peaceful", 1, -1),
        ("content", 1, -1),
    ],
)
def test_emotions_sit_in_their_circumplex_quadrant(name, valence_sign, arousal_sign):
    va, label = resolve_state(name)
    assert label == name
    assert math.copysign(1, va.valence) == valence_sign
    assert math.copysign(1, va.arousal) == arousal_sign


def test_sleepy_is_low_arousal_and_calmer_than_excited():
    sleepy, _ = resolve_state("sleepy")
    excited, _ = resolve_state("excited")
    # Published A.Mean.Sum: sleepy 3.04 (-0.49), excited 6.43 (+0.3575); the norms' arousal is compressed.
    assert sleepy.arousal < -0.45 < 0.3 < excited.arousal


def test_mapping_covers_every_jamendo_mood_theme_tag(jamendo_dir):
    tags = {
        line.strip().split("---", 1)[1] for line in (jamendo_dir / "tags_moodtheme.txt").read_text().split()
    }
    mapping = load_tag_mapping()
    assert len(tags) == 59
    assert set(mapping.tags) == tags
    assert set(THEMES) <= set(mapping.theme_tags)
    for entry in mapping.mood_entries:
        assert entry.emotion is not None


@pytest.mark.parametrize(("tag", "quadrant"), [("sad", (-1, -1)), ("relaxing", (1, -1)), ("happy", (1, 1))])
def test_mood_tags_resolve_with_or_without_prefix(tag, quadrant):
    plain, label = resolve_state(tag)
    prefixed, _ = resolve_state(f"mood/theme---{tag}")
    assert plain == prefixed and label == tag
    assert (math.copysign(1, plain.valence), math.copysign(1, plain.arousal)) == quadrant


def test_theme_tags_are_refused_as_states():
    with pytest.raises(UnknownEmotionError, match="theme"):
        resolve_state("mood/theme---christmas")


@settings(max_examples=60, deadline=None)
@given(coordinate, coordinate)
def test_mood_tag_for_is_the_nearest_mood_and_never_a_theme(v, a):
    mapping = load_tag_mapping()
    tag = mood_tag_for(VA(v, a), mapping)
    assert mapping.get(tag).kind == "mood"
    chosen = mapping.va(tag)
    distance = math.dist((v, a), (chosen.valence, chosen.arousal))
    for entry in mapping.mood_entries:
        assert distance <= math.dist((v, a), (entry.emotion.valence, entry.emotion.arousal)) + 1e-12


@settings(max_examples=60, deadline=None)
@given(coordinate, coordinate)
def test_coordinates_resolve_to_themselves_and_the_nearest_emotion_is_nearest(v, a):
    va, label = resolve_state(f"{v!r},{a!r}")
    assert va == VA(v, a)
    back = resolve_state(label)[0]  # the label rounds to two decimals
    assert abs(back.valence - v) <= 0.005 + 1e-12 and abs(back.arousal - a) <= 0.005 + 1e-12
    best = nearest_emotion(va)
    assert all(
        math.dist((v, a), (best.valence, best.arousal)) <= math.dist((v, a), (e.valence, e.arousal))
        for e in load_vocabulary()
    )


def test_every_emotion_is_its_own_nearest_emotion():
    for emotion in load_vocabulary():
        assert nearest_emotion(emotion.va) == emotion


@pytest.mark.parametrize("spec", ["1.5,0", "0,-1.01", "nan,0", "inf,0.2"])
def test_out_of_range_coordinates_are_refused(spec):
    with pytest.raises(UnknownEmotionError):
        resolve_state(spec)


def test_unknown_names_suggest_the_closest_known_ones():
    with pytest.raises(UnknownEmotionError, match=r"did you mean.*sad"):
        resolve_state("sadd")
    with pytest.raises(UnknownEmotionError, match=r"relaxed|relaxing"):
        resolve_state("relaxd")
    with pytest.raises(UnknownEmotionError):
        resolve_state("   ")


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_user_mapping_is_loaded_and_used(tmp_path):
    path = _write(
        tmp_path / "m.json",
        {"tags": {"downcast": {"kind": "mood", "emotion": "depressed"}, "xmas": {"kind": "theme"}}},
    )
    mapping = load_tag_mapping(path)
    assert mapping.tags == ("downcast", "xmas")
    assert mood_tag_for(VA(0.9, 0.9), mapping) == "downcast"  # the only mood tag
    assert resolve_state("downcast", mapping=mapping)[0] == resolve_state("depressed")[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"tags": {}}, "non-empty"),
        ({"tags": {"a": {"kind": "genre"}}}, "kind"),
        ({"tags": {"a": {"kind": "mood", "emotion": "zen"}}}, "not in the vocabulary"),
        ({"tags": {"a": {"kind": "theme"}}}, "no mood tags"),
        ({"tags": {"a": "calm"}}, "object"),
    ],
)
def test_bad_mapping_files_get_one_clear_error(tmp_path, content, message):
    with pytest.raises(MappingError, match=message) as info:
        load_tag_mapping(_write(tmp_path / "bad.json", content))
    assert "\n" not in str(info.value)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(MappingError, match="cannot read"):
        load_tag_mapping(tmp_path / "absent.json")
    with pytest.raises(VocabularyError, match="cannot read"):
        load_vocabulary(tmp_path / "absent.json")
    bad = _write(tmp_path / "v.json", {"emotions": [{"name": "x", "valence": 2, "arousal": 0}]})
    with pytest.raises(VocabularyError, match="valence"):
        load_vocabulary(bad)
    assert issubclass(MappingError, MusicMedError)


def test_plot_writes_a_png_that_shows_the_paths(tmp_path):
    path = [VA(-0.7, -0.4), VA(0.0, -0.8), VA(0.5, -0.8)]
    empty = plot_circumplex([], tmp_path / "empty.png")
    drawn = plot_circumplex([("planned", path), ("measured", path[::-1])], tmp_path / "paths.png", title="t")
    assert drawn == tmp_path / "paths.png"
    for png in (empty, drawn):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn.read_bytes() != empty.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "paths.png"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(drawn.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_the_vocabulary_refreshes_from_a_norms_csv(tmp_path):
    from musicmed_stream.emotion.norms import main as refresh_main

    norms = tmp_path / "Ratings_Warriner_et_al.csv"
    norms.write_text(
        ",Word,V.Mean.Sum,V.SD.Sum,A.Mean.Sum\n1,calm,7.0,1.0,1.5\n2,Sad,2.5,1.0,3.0\n3,zebra,6.0,1.0,4.0\n"
    )
    vocabulary = tmp_path / "emotions.json"
    vocabulary.write_text(
        json.dumps(
            {
                "emotions": [
                    {"name": "calm", "valence": 0.1, "arousal": 0.1},
                    {"name": "x", "valence": 0, "arousal": 0},
                    {"name": "sad", "valence": 0, "arousal": 0},
                ]
            }
        )
    )
    assert refresh_main([str(norms), "--vocabulary", str(vocabulary)]) == 0
    emotions = {e.name: e for e in load_vocabulary(vocabulary)}
    # Placed from the two refreshed words' own statistics: calm (7.0, 1.5), sad (2.5, 3.0).
    stats = (AxisStatistics(4.75, 2.25), AxisStatistics(2.25, 0.75))
    assert (emotions["calm"].valence, emotions["calm"].arousal) == to_circumplex(7.0, 1.5, stats)
    assert (emotions["sad"].valence, emotions["sad"].arousal) == to_circumplex(2.5, 3.0, stats)
    assert emotions["calm"].valence > 0.6 > -0.6 > emotions["sad"].valence
    assert emotions["calm"].arousal < -0.6 and emotions["sad"].arousal > 0.6
    assert (emotions["x"].valence, emotions["x"].arousal) == (0, 0)  # not in the norms: unchanged
    assert "checked against" in emotions["calm"].source
    bad = tmp_path / "bad.csv"
    bad.write_text("Word,Valence\ncalm,7\n")
    assert refresh_main([str(bad), "--vocabulary", str(vocabulary)]) == 2


def test_checked_entries_say_so():
    raw = json.loads(Path(__file__).parents[1].joinpath("musicmed_stream/data/emotions.json").read_text())
    for entry in raw["emotions"]:
        assert ("checked against" in entry["source"]) == entry["checked"]
