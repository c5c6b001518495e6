"""Agreement between raters who pile-sorted the mood/theme tags into emotion categories.

Each rater gives one category per tag (an emotion name, or ``theme`` for tags with no affect).
Agreement is Fleiss' kappa over the tags rated by every rater; the majority category of each
tag gives a consensus mapping.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.emotion.mapping import TagMapping, parse_tag_mapping, strip_tag
from musicmed_stream.emotion.vocabulary import Emotion
from musicmed_stream.errors import ConfigError

THEME = "theme"


class RatingsError(ConfigError):
    """A rater file that cannot be read or does not rate the same tags as the others."""


@dataclass(frozen=True)
class Agreement:
    """Result of :func:`rater_agreement`.

    Attributes
    ----------
    kappa : float
        Fleiss' kappa; NaN when every rating is the same category (chance agreement is then 1).
    tags : tuple of str
        The rated tags, sorted.
    categories : tuple of str
        Every category used, sorted.
    majority : dict
        ``{tag: category}``, the most frequent category (ties: the alphabetically first).
    votes : dict
        ``{tag: votes for the majority category}``.
    ties : tuple of str
        Tags whose top categories tie.
    n_raters : int
    """

    kappa: float
    tags: tuple[str, ...]
    categories: tuple[str, ...]
    majority: dict[str, str]
    votes: dict[str, int]
    ties: tuple[str, ...]
    n_raters: int


def _parse_csv(text: str, where: str) -> dict[str, str]:
    ratings: dict[str, str] = {}
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise RatingsError(f"{where} line {line_no}: expected 'tag,category'")
        if line_no == 1 and cells[0].lower() == "tag":
            continue  # header
        _add(ratings, cells[0], cells[1], where)
    return ratings


def _parse_json(data: Any, where: str) -> dict[str, str]:
    if isinstance(data, dict) and isinstance(data.get("tags"), dict):
        # A mapping file: its mood tags' emotions, "theme" for the rest.
        data = {
            tag: (spec.get("emotion") if spec.get("kind") == "mood" else THEME)
            if isinstance(spec, dict)
            else spec
            for tag, spec in data["tags"].items()
        }
    if not isinstance(data, dict):
        raise RatingsError(f"{where} must hold an object of tag -> category")
    ratings: dict[str, str] = {}
    for tag, category in data.items():
        if not isinstance(category, str) or not category.strip():
            raise RatingsError(f"{where}: tag {tag!r} needs a category string, got {category!r}")
        _add(ratings, tag, category, where)
    return ratings


def _add(ratings: dict[str, str], tag: str, category: str, where: str) -> None:
    tag = strip_tag(tag)
    if tag in ratings:
        raise RatingsError(f"{where}: tag {tag!r} is rated twice")
    ratings[tag] = category.strip().lower()


def read_ratings(path: str | os.PathLike[str]) -> dict[str, str]:
    """One rater's ``{tag: category}`` from a CSV (``tag,category``) or JSON file.

    JSON may be ``{tag: category}`` or a mapping file (mood tags rate as their emotion, theme
    tags as ``theme``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RatingsError(f"cannot read rater file {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RatingsError(f"rater file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        ratings = _parse_json(data, str(path))
    else:
        ratings = _parse_csv(text, str(path))
    if not ratings:
        raise RatingsError(f"rater file {path} rates no tags")
    return ratings


def rater_agreement(raters: list[dict[str, str]], names: list[str] | None = None) -> Agreement:
    """Fleiss' kappa and majority categories of several raters.

    Parameters
    ----------
    raters : list of dict
        ``{tag: category}`` per rater; all must rate the same tags.
    names : list of str, optional
        Rater names for error messages (e.g. file names).

    Raises
    ------
    RatingsError
        Fewer than two raters, or raters who rated different tags.
    """
    names = names or [f"rater {i + 1}" for i in range(len(raters))]
    if len(raters) < 2:
        raise RatingsError("agreement needs at least two raters")
    tags = sorted(raters[0])
    for name, ratings in zip(names[1:], raters[1:], strict=True):
        missing, extra = sorted(set(tags) - set(ratings)), sorted(set(ratings) - set(tags))
        if missing or extra:
            detail = f"lacks {', '.join(missing[:5])}" if missing else f"adds {', '.join(extra[:5])}"
            raise RatingsError(f"{name} does not rate the same tags as {names[0]}: it {detail}")
    categories = sorted({c for ratings in raters for c in ratings.values()})
    codes = {c: i for i, c in enumerate(categories)}
    data = np.array([[codes[r[tag]] for r in raters] for tag in tags])
    # Imported here: statsmodels takes most of a second to import, and only this command needs it.
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    table, _ = aggregate_raters(data, n_cat=len(categories))
    kappa = float("nan") if len(categories) == 1 else float(fleiss_kappa(table, method="fleiss"))
    majority: dict[str, str] = {}
    votes: dict[str, int] = {}
    ties: list[str] = []
    for tag in tags:
        counts = Counter(r[tag] for r in raters)
        top = max(counts.values())
        leaders = sorted(c for c, n in counts.items() if n == top)
        majority[tag], votes[tag] = leaders[0], top
        if len(leaders) > 1:
            ties.append(tag)
    return Agreement(kappa, tuple(tags), tuple(categories), majority, votes, tuple(ties), len(raters))


def kappa_label(kappa: float) -> str:
    """Landis & Koch (1977) verbal label of a kappa value (< 0 poor, up to 0.2 slight, ...)."""
    if np.isnan(kappa):
        return "undefined: every rating is the same category"
    if kappa < 0.0:
        return "poor"
    for upper, label in ((0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if kappa <= upper:
            return label
    return "almost perfect"


def majority_mapping(agreement: Agreement, vocabulary: tuple[Emotion, ...], source: str) -> TagMapping:
    """The majority categories as a tag mapping (``theme`` -> theme tag, an emotion -> mood tag).

    Raises
    ------
    MappingError
        If a majority category is neither ``theme`` nor an emotion of ``vocabulary``.
    """
    tags = {
        tag: {"kind": "theme"} if category == THEME else {"kind": "mood", "emotion": category}
        for tag, category in agreement.majority.items()
    }
    return parse_tag_mapping({"source": source, "tags": tags}, "majority mapping", vocabulary)
