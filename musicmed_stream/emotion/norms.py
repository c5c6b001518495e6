"""Refresh the vocabulary's coordinates from the Warriner et al. (2013) norms CSV.

The built-in ``data/emotions.json`` was written where the norms could not be downloaded; entries
marked ``"checked": false`` hold remembered values. With the published CSV at hand
(``Ratings_Warriner_et_al.csv``: columns ``Word``, ``V.Mean.Sum``, ``A.Mean.Sum``, ...), run::

    python -m musicmed_stream.emotion.norms Ratings_Warriner_et_al.csv [--vocabulary FILE] [--out FILE]

to replace every entry found in the CSV with the published means, rescaled with ``(x - 5) / 4``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.emotion.vocabulary import VocabularyError, data_path, read_json

SOURCE = "Warriner, Kuperman & Brysbaert (2013), V.Mean.Sum / A.Mean.Sum, checked against {name}"
FIELDS = ("name", "valence", "arousal", "raw_valence", "raw_arousal", "checked", "source")


def rescale(rating: float) -> float:
    """A 1-9 rating on the circumplex's [-1, 1] scale: ``(x - 5) / 4``."""
    return round((rating - 5.0) / 4.0, 4)


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
            valence=rescale(v),
            arousal=rescale(a),
            checked=True,
            source=SOURCE.format(name=norms_name),
        )
        updated.append(entry["name"])
    return updated


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
