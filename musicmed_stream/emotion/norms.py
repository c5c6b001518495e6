"""Refresh the vocabulary's coordinates from the Warriner et al. (2013) norms CSV.

The built-in ``data/emotions.json`` was written where the norms could not be downloaded; entries
marked ``"checked": false`` hold remembered values. With the published CSV at hand
(``Ratings_Warriner_et_al.csv``: columns ``Word``, ``V.Mean.Sum``, ``A.Mean.Sum``, ...), run::

    python -m musicmed_stream.emotion.norms Ratings_Warriner_et_al.csv [--vocabulary FILE] [--out FILE]

to replace every entry found in the CSV with the published means, placed on the circumplex by
:func:`to_circumplex` (see ``docs/emotion_model.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.emotion.vocabulary import VocabularyError, data_path, read_json

SOURCE = "Warriner, Kuperman & Brysbaert (2013), V.Mean.Sum / A.Mean.Sum, checked against {name}"
FIELDS = ("name", "valence", "arousal", "raw_valence", "raw_arousal", "checked", "source")


# tanh gains: the gentlest (largest, to two decimals) that put Russell's (1980) reference words in
# their bands with a margin of 0.02 or more (see docs/emotion_model.md; tested).
GAIN_VALENCE = 0.75
GAIN_AROUSAL = 0.34
AXIS_SCALE = 1.0 / math.sqrt(2.0)  # both axes in the square inscribed in the unit circle


@dataclass(frozen=True)
class AxisStatistics:
    """Mean and (population) SD of one axis's 1-9 ratings over the vocabulary's words."""

    mean: float
    sd: float


def vocabulary_statistics(entries: list[dict[str, Any]]) -> tuple[AxisStatistics, AxisStatistics]:
    """Valence and arousal statistics of the entries' raw norms (``raw_valence``, ``raw_arousal``)."""
    stats = []
    for key in ("raw_valence", "raw_arousal"):
        values = [float(e[key]) for e in entries if key in e]
        if len(values) < 2:
            raise VocabularyError("the vocabulary needs raw norms of at least two words to place them")
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))
        stats.append(AxisStatistics(round(mean, 4), round(sd, 4)))
    return stats[0], stats[1]


def axis(rating: float, stats: AxisStatistics, gain: float) -> float:
    """One 1-9 rating on one circumplex axis: standardise, squash with tanh, scale by 1/sqrt(2)."""
    # Six decimals: the extremes saturate, and four would tie words the norms tell apart.
    return round(AXIS_SCALE * math.tanh((rating - stats.mean) / stats.sd / gain), 6)


def to_circumplex(
    valence: float, arousal: float, stats: tuple[AxisStatistics, AxisStatistics]
) -> tuple[float, float]:
    """``(valence, arousal)`` on the circumplex from a word's 1-9 norms.

    Each axis is standardised within the vocabulary (``stats``: the words' mean and SD), squashed
    with ``tanh`` and scaled by 1/sqrt(2). Each axis is a strictly increasing function of its norm,
    so every word keeps its order on both axes, the words fill the circle, and no point can lie
    outside the unit circle.
    """
    return (axis(valence, stats[0], GAIN_VALENCE), axis(arousal, stats[1], GAIN_AROUSAL))


def rescaling_text(stats: tuple[AxisStatistics, AxisStatistics]) -> str:
    v, a = stats
    return (
        f"valence = tanh((V.Mean.Sum - {v.mean}) / {v.sd} / {GAIN_VALENCE}) / sqrt(2), "
        f"arousal = tanh((A.Mean.Sum - {a.mean}) / {a.sd} / {GAIN_AROUSAL}) / sqrt(2): "
        "standardised within the vocabulary, squashed, inside the unit circle (docs/emotion_model.md)"
    )


def read_norms(path: str | os.PathLike[str]) -> dict[str, tuple[float, float]]:
    """``{word: (V.Mean.Sum, A.Mean.Sum)}`` from the norms CSV (words lower-cased)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = csv.DictReader(handle)
            missing = {"Word", "V.Mean.Sum", "A.Mean.Sum"} - set(rows.fieldnames or ())
            if missing:
                raise VocabularyError(f"{path} lacks the norms columns {', '.join(sorted(missing))}")
            return {r["Word"].strip().lower(): (float(r["V.Mean.Sum"]), float(r["A.Mean.Sum"])) for r in rows}
    except OSError as exc:
        raise VocabularyError(f"cannot read norms file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise VocabularyError(f"norms file {path} holds a non-numeric mean: {exc}") from exc


def refresh(vocabulary: dict[str, Any], norms: dict[str, tuple[float, float]], norms_name: str) -> list[str]:
    """Update ``vocabulary["emotions"]`` in place from ``norms``; return the names updated."""
    updated = []
    for entry in vocabulary.get("emotions", []):
        found = norms.get(str(entry.get("name", "")).lower())
        if found is None:
            continue
        v, a = found
        entry.update(
            raw_valence=v,
            raw_arousal=a,
            checked=True,
            source=SOURCE.format(name=norms_name),
        )
        updated.append(entry["name"])
    recompute(vocabulary)
    return updated


def recompute(vocabulary: dict[str, Any]) -> None:
    """Place every entry with raw norms on the circle, from the vocabulary's own statistics."""
    entries = [e for e in vocabulary.get("emotions", []) if "raw_valence" in e and "raw_arousal" in e]
    stats = vocabulary_statistics(entries)
    vocabulary["rescaling"] = rescaling_text(stats)
    for entry in entries:
        entry["valence"], entry["arousal"] = to_circumplex(entry["raw_valence"], entry["raw_arousal"], stats)


def dumps(vocabulary: dict[str, Any]) -> str:
    """The vocabulary file's layout: one emotion per line."""
    head = "".join(f" {json.dumps(k)}: {json.dumps(v)},\n" for k, v in vocabulary.items() if k != "emotions")
    rows = ",\n".join("  " + json.dumps({k: e[k] for k in FIELDS if k in e}) for e in vocabulary["emotions"])
    return "{\n" + head + ' "emotions": [\n' + rows + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicmed_stream.emotion.norms", description=__doc__)
    parser.add_argument("norms", help="Ratings_Warriner_et_al.csv")
    parser.add_argument(
        "--vocabulary", default=str(data_path("emotions.json")), help="vocabulary JSON to refresh"
    )
    parser.add_argument("--out", help="where to write (default: overwrite --vocabulary)")
    args = parser.parse_args(argv)
    try:
        vocabulary = read_json(args.vocabulary, "vocabulary file", VocabularyError)
        updated = refresh(vocabulary, read_norms(args.norms), Path(args.norms).name)
        write_text_atomic(args.out or args.vocabulary, dumps(vocabulary))
    except (VocabularyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"updated {len(updated)} of {len(vocabulary['emotions'])} emotions from {args.norms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
