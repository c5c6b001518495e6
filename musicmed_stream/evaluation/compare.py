"""Compare evaluated runs side by side: the figures of Table 1 of the method (CLAP, AUPRC, Hamming,
time, size), and what a clinician looks at in a session (does the music follow the path, is it
comfortable to listen to: loudness, loudness range, steps, peaks, clicks)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicmed_stream.evaluation.run import RunError


@dataclass(frozen=True)
class Column:
    """One figure of the comparison.

    ``change``: ``pct`` (% change relative to the first run) for figures where a ratio means
    something; ``diff`` (plain difference) for correlations, distances, decibels and counts, where
    it does not (-20 LUFS against -23 LUFS is 3 LU louder, not "13 % more").
    """

    key: str
    label: str
    change: str = "pct"
    digits: str = ".3g"

    @property
    def change_key(self) -> str:
        return f"{self.key}_change_pct" if self.change == "pct" else f"{self.key}_change"


GENERATION = (
    Column("clap", "CLAP"),
    Column("auprc", "AUPRC"),
    Column("hamming", "Hamming"),
    Column("minutes_per_15min_session", "min / 15-min session"),
    Column("parameters", "parameters"),
)
LISTENING = (
    Column("spearman_valence", "ρ valence", "diff", ".2f"),
    Column("spearman_arousal", "ρ arousal", "diff", ".2f"),
    Column("mean_distance", "path distance", "diff", ".2f"),
    Column("integrated_lufs", "LUFS", "diff", ".1f"),
    Column("loudness_range_lu", "LRA (LU)", "diff", ".1f"),
    Column("max_loudness_step_lu", "max step (LU)", "diff", ".1f"),
    Column("true_peak_dbtp", "true peak (dBTP)", "diff", ".1f"),
    Column("clicks", "clicks", "diff", "d"),
)
COLUMNS = GENERATION + LISTENING
# Shown even when no run has them: "n/a" under CLAP says the run was not scored with a CLAP model.
ALWAYS = ("clap", "auprc", "hamming", "minutes_per_15min_session")


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def listening_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """Path adherence and comfort figures of a ``metrics.json`` (also of one written before the
    ``table`` carried them)."""
    adherence = metrics.get("adherence") or {}
    comfort = metrics.get("comfort") or {}
    clicks = comfort.get("clicks_s")
    return {
        "spearman_valence": _number(adherence.get("spearman_valence")),
        "spearman_arousal": _number(adherence.get("spearman_arousal")),
        "mean_distance": _number(adherence.get("mean_distance")),
        "integrated_lufs": _number(comfort.get("integrated_lufs")),
        "loudness_range_lu": _number(comfort.get("loudness_range_lu")),
        "max_loudness_step_lu": _number(comfort.get("max_loudness_step_lu")),
        "true_peak_dbtp": _number(comfort.get("true_peak_dbtp")),
        "clicks": len(clicks) if isinstance(clicks, list) else None,
    }


def load_table_row(folder: str | Path) -> dict[str, Any]:
    """The figures of an evaluated run folder (its ``metrics.json``)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise RunError(f"{folder} has no metrics.json; run `musicmed-stream evaluate {folder}` first")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        table = metrics["table"]
        row = {c.key: table.get(c.key) for c in GENERATION} | listening_figures(metrics)
        row |= {c.key: table[c.key] for c in LISTENING if table.get(c.key) is not None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"cannot read the table figures of {path}: {exc!r}") from exc
    return row | {"mer": table.get("mer"), "clap_model": table.get("clap_model")}


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


def difference(value: float | None, reference: float | None) -> float | None:
    """``value - reference``; ``None`` when either is missing."""
    if value is None or reference is None:
        return None
    return value - reference


def comparison(names: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's figures with the change of each relative to the first run."""
    first = rows[0]
    table = []
    for name, row in zip(names, rows, strict=True):
        entry: dict[str, Any] = {"run": name}
        for c in COLUMNS:
            entry[c.key] = row.get(c.key)
            change = percent_change if c.change == "pct" else difference
            entry[c.change_key] = change(row.get(c.key), first.get(c.key))
        table.append(entry)
    return table


def visible_columns(table: Sequence[dict[str, Any]]) -> list[Column]:
    """The columns worth a look: Table 1's always; the generator's size only where some run has a
    known, non-zero one (the built-in engine's 0 learned parameters says nothing about it); the
    others when some run has them."""

    def shown(c: Column) -> bool:
        values = [row.get(c.key) for row in table]
        if c.key == "parameters":
            return any(v not in (None, 0) for v in values)
        return c.key in ALWAYS or any(v is not None for v in values)

    return [c for c in COLUMNS if shown(c)]


def _text(value: Any, column: Column) -> str:
    if column.digits == "d":
        return f"{value:d}" if isinstance(value, int) else f"{value:.0f}"
    if column.change == "pct" and (
        isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000)
    ):
        return f"{value:,.0f}"
    return f"{value:{column.digits}}"


def _cell(value: Any, change: float | None, first: bool, column: Column) -> str:
    if value is None:
        return "n/a"
    text = _text(value, column)
    if first or change is None:
        return text
    if column.change == "pct":
        return f"{text} ({change:+.1f}%)"
    digits = ".0f" if column.digits == "d" else column.digits.replace("g", "f")
    return f"{text} ({change:+{digits}})"


def _markdown_table(table: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    header = ["run"] + [c.label for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(table):
        cells = [row["run"]] + [_cell(row[c.key], row[c.change_key], i == 0, c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_markdown(table: Sequence[dict[str, Any]]) -> str:
    """Two tables: what was generated (Table 1 of the method), then what was heard (path
    adherence and listening comfort); changes relative to the first run in brackets."""
    columns = visible_columns(table)
    generation = [c for c in columns if c in GENERATION]
    listening = [c for c in columns if c in LISTENING]
    lines = _markdown_table(table, generation)
    if listening:
        lines += ["", *_markdown_table(table, listening)]
    return "\n".join(lines) + "\n"


def format_csv(table: Sequence[dict[str, Any]]) -> str:
    columns = visible_columns(table)
    buffer = io.StringIO()
    fields = ["run"] + [c.key for c in columns] + [c.change_key for c in columns]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: "" if row[k] is None else row[k] for k in fields})
    return buffer.getvalue()
