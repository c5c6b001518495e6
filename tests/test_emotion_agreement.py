"""Fleiss' kappa and majority mapping of raters' tag -> emotion pile sorts."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest

from musicmed_stream.cli.main import main
from musicmed_stream.emotion import load_tag_mapping
from musicmed_stream.emotion.agreement import RatingsError, rater_agreement, read_ratings


def fleiss_by_hand(raters: list[dict[str, str]]) -> Fraction:
    """Fleiss (1971) with exact fractions: (P_bar - P_e) / (1 - P_e)."""
    n = len(raters)
    tags = sorted(raters[0])
    categories = sorted({c for r in raters for c in r.values()})
    table = [[sum(r[t] == c for r in raters) for c in categories] for t in tags]
    p_i = [Fraction(sum(x * x for x in row) - n, n * (n - 1)) for row in table]
    p_bar = sum(p_i) / len(tags)
    p_j = [Fraction(sum(row[j] for row in table), n * len(tags)) for j in range(len(categories))]
    p_e = sum(p * p for p in p_j)
    return (p_bar - p_e) / (1 - p_e)


R1 = {"calm": "calm", "sad": "sad", "christmas": "theme", "happy": "happy"}
R2 = {"calm": "relaxed", "sad": "sad", "christmas": "theme", "happy": "happy"}
R3 = {"calm": "calm", "sad": "melancholy", "christmas": "theme", "happy": "happy"}


def test_perfect_agreement_is_kappa_one():
    assert rater_agreement([R1, dict(R1), dict(R1)]).kappa == pytest.approx(1.0)


def test_kappa_matches_the_formula_on_a_small_table():
    # By hand: P_i = 1/3, 1, 1, 1/3 -> P_bar = 2/3; shares 2,1,3,3,2,1 of 12 -> P_e = 28/144; kappa = 17/29.
    assert fleiss_by_hand([R1, R2, R3]) == Fraction(17, 29)
    result = rater_agreement([R1, R2, R3])
    assert result.kappa == pytest.approx(17 / 29)
    assert result.majority == {"calm": "calm", "christmas": "theme", "happy": "happy", "sad": "sad"}
    assert result.votes == {"calm": 2, "christmas": 3, "happy": 3, "sad": 2}
    assert result.ties == ()


def test_kappa_below_chance_and_ties():
    a = {"x": "calm", "y": "sad"}
    b = {"x": "sad", "y": "calm"}
    result = rater_agreement([a, b])
    assert result.kappa == pytest.approx(float(fleiss_by_hand([a, b])))
    assert result.kappa < 0
    assert result.ties == ("x", "y") and result.majority == {"x": "calm", "y": "calm"}


def test_a_single_category_has_no_defined_kappa():
    assert math.isnan(rater_agreement([{"x": "calm"}, {"x": "calm"}]).kappa)


def test_raters_must_rate_the_same_tags():
    with pytest.raises(RatingsError, match="lacks christmas"):
        rater_agreement([R1, {k: v for k, v in R2.items() if k != "christmas"}], ["a.csv", "b.csv"])
    with pytest.raises(RatingsError, match="two raters"):
        rater_agreement([R1])


def test_csv_json_and_mapping_files_are_read(tmp_path):
    (tmp_path / "a.csv").write_text("tag,category\nmood/theme---Calm, Calm\n\n# comment\nsad,sad\n")
    (tmp_path / "b.json").write_text(json.dumps({"calm": "calm", "sad": "sad"}))
    assert read_ratings(tmp_path / "a.csv") == {"calm": "calm", "sad": "sad"}
    assert read_ratings(tmp_path / "b.json") == {"calm": "calm", "sad": "sad"}
    from_mapping = read_ratings(load_tag_mapping().path or "musicmed_stream/data/moodtheme_mapping.json")
    assert from_mapping["christmas"] == "theme" and from_mapping["sad"] == "sad"
    (tmp_path / "bad.csv").write_text("calm\n")
    with pytest.raises(RatingsError, match="line 1"):
        read_ratings(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("calm,calm\ncalm,sad\n")
    with pytest.raises(RatingsError, match="twice"):
        read_ratings(tmp_path / "dup.csv")


def _rater_files(tmp_path) -> list[str]:
    paths = []
    for i, rater in enumerate((R1, R2, R3)):
        path = tmp_path / f"r{i}.csv"
        path.write_text("".join(f"{t},{c}\n" for t, c in rater.items()))
        paths.append(str(path))
    return paths


def test_cli_reports_kappa_and_writes_the_majority_mapping(tmp_path, capsys):
    out = tmp_path / "majority.json"
    assert main(["mapping", "agreement", *_rater_files(tmp_path), "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fleiss_kappa"] == pytest.approx(17 / 29)
    mapping = load_tag_mapping(out)
    assert mapping.get("christmas").kind == "theme"
    assert mapping.get("sad").emotion.name == "sad"


def test_cli_refuses_a_majority_that_is_not_an_emotion(tmp_path, capsys):
    files = []
    for i in range(2):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps({"calm": "zen"}))
        files.append(str(path))
    out = tmp_path / "m.json"
    assert main(["mapping", "agreement", *files, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "zen" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("kappa", "label"),
    [
        (-0.1, "poor"),
        (0.0, "slight"),
        (0.2, "slight"),
        (0.35, "fair"),
        (0.6, "moderate"),
        (0.7, "substantial"),
        (0.81, "almost perfect"),
    ],
)
def test_landis_koch_labels(kappa, label):
    from musicmed_stream.emotion.agreement import kappa_label

    assert kappa_label(kappa) == label
