"""Compare evaluated runs side by side, like Table 1 of the method (CLAP, AUPRC, Hamming, time, size)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from musicmed_stream.evaluation.run import RunError

COLUMNS = (
    ("clap", "CLAP"),
    ("auprc", "AUPRC"),
    ("hamming", "Hamming"),
    ("minutes_per_15min_session", "min / 15-min session"),
    ("parameters", "parameters"),
)


def load_table_row(folder: str | Path) -> dict[str, Any]:
    """The ``table`` figures of an evaluated run folder (its ``metrics.json``)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise RunError(f"{folder} has no metrics.json; run `musicmed-stream evaluate {folder}` first")
    try:
        row = json.loads(path.read_text(encoding="utf-8"))["table"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"cannot read the table figures of {path}: {exc!r}") from exc
    return {key: row.get(key) for key, _ in COLUMNS} | {
        "mer": row.get("mer"),
        "clap_model": row.get("clap_model"),
    }


def comparability_notes(names: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Warnings when runs were scored with different mood backends or CLAP models."""
    notes = []
    for key, what in (("mer", "mood-recognition backends"), ("clap_model", "CLAP models")):
        used = {name: row.get(key) for name, row in zip(names, rows, strict=True) if row.get(key) is not None}
        if len(set(used.values())) > 1:
            listing = ", ".join(f"{name}: {value}" for name, value in used.items())
            notes.append(f"runs were scored with different {what} ({listing}); their figures do not compare")
    return notes


def percent_change(value: float | None, reference: float | None) -> float | None:
    """``100 * (value - reference) / |reference|``; ``None`` when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return 100.0 * (value - reference) / abs(reference)


def comparison(names: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's figures with the % change of each relative to the first run."""
    first = rows[0]
    return [
        {"run": name}
        | {key: row[key] for key, _ in COLUMNS}
        | {f"{key}_change_pct": percent_change(row[key], first[key]) for key, _ in COLUMNS}
        for name, row in zip(names, rows, strict=True)
    ]


def _cell(value: Any, change: float | None, first: bool) -> str:
    if value is None:
        return "n/a"
    text = (
        f"{value:,.0f}"
        if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000)
        else f"{value:.3g}"
    )
    if first or change is None:
        return text
    return f"{text} ({change:+.1f}%)"


def format_markdown(table: Sequence[dict[str, Any]]) -> str:
    header = ["run"] + [label for _, label in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(table):
        cells = [row["run"]] + [_cell(row[k], row[f"{k}_change_pct"], i == 0) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(table: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fields = ["run"] + [k for k, _ in COLUMNS] + [f"{k}_change_pct" for k, _ in COLUMNS]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: "" if row[k] is None else row[k] for k in fields})
    return buffer.getvalue()
