"""The evaluation report: plots (PNG, matplotlib Agg) and a Markdown or HTML page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.emotion.point import VA

PATH_PLOT = "eval_path.png"
CLIPS_PLOT = "eval_clips.png"
LOUDNESS_PLOT = "eval_loudness.png"


def _save(fig: Figure, path: Path) -> None:
    # Write beside the target and rename, like every other output of the project.
    tmp = path.with_name(f".{path.name}.part")
    FigureCanvasAgg(fig).print_png(tmp)
    tmp.replace(path)


def plot_clip_scores(metrics: dict[str, Any], path: Path) -> None:
    """Planned vs measured valence and arousal per clip, and the CLAP score per clip when present."""
    clips = metrics["clips"]
    index = [c["index"] for c in clips]
    has_clap = metrics.get("clap") is not None
    fig = Figure(figsize=(8, 6 if has_clap else 4), layout="constrained")
    axes = fig.subplots(2 if has_clap else 1, 1, squeeze=False)[:, 0]
    ax = axes[0]
    for axis, colour in (("valence", "tab:blue"), ("arousal", "tab:red")):
        ax.plot(index, [c["planned"][axis] for c in clips], "-", color=colour, label=f"planned {axis}")
        ax.plot(index, [c["measured"][axis] for c in clips], "o--", color=colour, label=f"measured {axis}")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("clip")
    ax.set_ylabel("valence / arousal")
    ax.legend(fontsize=7, ncol=2)
    if has_clap:
        axes[1].bar(index, [c["clap"] if c["clap"] is not None else np.nan for c in clips], color="tab:green")
        axes[1].set_xlabel("clip")
        axes[1].set_ylabel("CLAP score")
    _save(fig, path)


def plot_loudness(metrics: dict[str, Any], short_term: np.ndarray, path: Path) -> None:
    """Short-term loudness over time with the clip boundaries and the integrated loudness."""
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.subplots()
    if short_term.size:
        values = np.where(np.isfinite(short_term[:, 1]), short_term[:, 1], np.nan)
        ax.plot(short_term[:, 0], values, color="tab:purple", linewidth=1.0, label="short-term (3 s)")
    integrated = metrics["comfort"]["integrated_lufs"]
    if integrated is not None:
        ax.axhline(integrated, color="0.4", linestyle="--", linewidth=0.8, label="integrated")
    for clip in metrics["clips"][1:]:
        ax.axvline(clip["start_s"], color="0.8", linewidth=0.6)
    for t in metrics["comfort"]["clicks_s"]:
        ax.axvline(t, color="tab:red", linewidth=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("loudness (LUFS)")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_path(metrics: dict[str, Any], path: Path) -> None:
    """Planned and measured path on the circumplex (the emotion model's plot)."""
    from musicmed_stream.emotion.plot import plot_circumplex

    planned = [VA(c["planned"]["valence"], c["planned"]["arousal"]) for c in metrics["clips"]]
    measured = [VA(c["measured"]["valence"], c["measured"]["arousal"]) for c in metrics["clips"]]
    plot_circumplex([("planned", planned), ("measured", measured)], path, title="Planned vs measured path")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) lines of the report's summary table."""
    clap, rec, adh = metrics.get("clap"), metrics["recognition"], metrics["adherence"]
    comfort, speed = metrics["comfort"], metrics["speed"]
    rows = [
        ("clips / duration", f"{metrics['run']['clips']} / {_fmt(metrics['run']['duration_s'], 1)} s"),
        (
            "CLAP score (mean ± sd)",
            "n/a" if clap is None else f"{clap['mean']:.2f} ± {clap['sd']:.2f} ({clap['model']})",
        ),
    ]
    if "skipped" in rec:
        rows.append((f"mood recognition ({rec['backend']})", rec["skipped"]))
    else:
        rows += [
            (f"AUPRC, macro ({rec['backend']})", _fmt(rec["auprc"], 3)),
            (f"Hamming score ({rec['prediction']})", _fmt(rec["hamming"], 3)),
        ]
    rows += [
        ("Spearman valence / arousal", f"{_fmt(adh['spearman_valence'])} / {_fmt(adh['spearman_arousal'])}"),
        ("mean path distance", _fmt(adh["mean_distance"], 3)),
        ("start quadrant right", f"{_fmt(adh['start_quadrant_correct'])} ({adh['start_quadrant_measured']})"),
        ("end quadrant right", f"{_fmt(adh['end_quadrant_correct'])} ({adh['end_quadrant_measured']})"),
        ("integrated loudness", f"{_fmt(comfort['integrated_lufs'], 1)} LUFS"),
        ("loudness range", f"{_fmt(comfort['loudness_range_lu'], 1)} LU"),
        ("largest clip-to-clip loudness step", f"{_fmt(comfort['max_loudness_step_lu'], 1)} LU"),
        ("true peak", f"{_fmt(comfort['true_peak_dbtp'], 2)} dBTP"),
        ("clipped samples", _fmt(comfort["clipped_samples"])),
        ("silent gaps (>= 1 s)", _fmt(len(comfort["silent_gaps"]))),
        ("clicks (at crossfades)", f"{len(comfort['clicks_s'])} ({comfort['clicks_at_boundaries']})"),
        (
            "real-time factor" + (f" ({speed['basis']})" if speed.get("basis") else ""),
            _fmt(speed["real_time_factor"], 1),
        ),
        ("engine real-time factor", _fmt(speed.get("engine_real_time_factor"), 1)),
        ("minutes per 15-min session", _fmt(speed["minutes_per_15min_session"], 2)),
    ]
    return rows


def clip_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-clip table."""
    header = ["#", "start s", "mood", "planned V, A", "measured V, A", "tempo", "key", "CLAP", "predicted"]
    predicted = metrics["recognition"].get("predicted")
    rows = []
    for i, c in enumerate(metrics["clips"]):
        rows.append(
            [
                str(c["index"]),
                _fmt(c["start_s"], 1),
                c["mood"],
                f"{c['planned']['valence']:+.2f}, {c['planned']['arousal']:+.2f}",
                f"{c['measured']['valence']:+.2f}, {c['measured']['arousal']:+.2f}",
                _fmt(c["features"]["tempo_bpm"], 0),
                c["features"]["key"] or "-",
                _fmt(c["clap"]),
                ", ".join(predicted[i]) if predicted else "-",
            ]
        )
    return header, rows


def render_markdown(metrics: dict[str, Any]) -> str:
    lines = [f"# Evaluation of {metrics['run']['folder']}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(metrics)]
    lines += ["", f"![planned vs measured path]({PATH_PLOT})", "", f"![per-clip scores]({CLIPS_PLOT})", ""]
    lines += [f"![loudness over time]({LOUDNESS_PLOT})", "", "## Clips", ""]
    header, rows = clip_rows(metrics)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_html(metrics: dict[str, Any]) -> str:
    esc = html.escape
    summary = "".join(f"<tr><th>{esc(n)}</th><td>{esc(v)}</td></tr>" for n, v in summary_rows(metrics))
    header, rows = clip_rows(metrics)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows)
    images = "".join(
        f'<p><img src="{name}" alt="{name}"></p>' for name in (PATH_PLOT, CLIPS_PLOT, LOUDNESS_PLOT)
    )
    title = esc(f"Evaluation of {metrics['run']['folder']}")
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head><body>"
        f"<h1>{title}</h1><table>{summary}</table>{images}<h2>Clips</h2>"
        f"<table><tr>{head}</tr>{body}</table></body></html>\n"
    )


def write_report(metrics: dict[str, Any], short_term: np.ndarray, out: Path, report_format: str) -> Path:
    """Write the three plots and ``evaluation.md`` / ``evaluation.html`` into ``out``; return the page."""
    plot_path(metrics, out / PATH_PLOT)
    plot_clip_scores(metrics, out / CLIPS_PLOT)
    plot_loudness(metrics, short_term, out / LOUDNESS_PLOT)
    text = render_markdown(metrics) if report_format == "md" else render_html(metrics)
    return write_text_atomic(out / f"evaluation.{report_format}", text)
