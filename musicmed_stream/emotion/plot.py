"""Draw the circumplex with the vocabulary and one or more paths (planned, measured...) as a PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from musicmed_stream.audio_io import write_bytes_atomic
from musicmed_stream.emotion.point import VA
from musicmed_stream.emotion.vocabulary import Emotion, load_vocabulary

PathSpec = tuple[str, Sequence[VA]]


def _draw_frame(ax: Axes, vocabulary: Sequence[Emotion]) -> None:
    theta = np.linspace(0.0, 2 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), color="0.6", linewidth=0.8)
    ax.axhline(0.0, color="0.75", linewidth=0.6)
    ax.axvline(0.0, color="0.75", linewidth=0.6)
    ax.scatter([e.valence for e in vocabulary], [e.arousal for e in vocabulary], s=9, color="0.45", zorder=2)
    for e in vocabulary:
        ax.annotate(
            e.name,
            (e.valence, e.arousal),
            fontsize=6,
            color="0.35",
            xytext=(2, 2),
            textcoords="offset points",
        )
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")


def plot_circumplex(
    paths: Sequence[PathSpec],
    out_path: str | os.PathLike[str],
    title: str = "Valence-arousal circumplex",
    vocabulary: Sequence[Emotion] | None = None,
) -> Path:
    """Write a PNG of the circumplex with labelled paths.

    Parameters
    ----------
    paths : sequence of (label, list of VA)
        E.g. ``[("planned", [...]), ("measured", [...])]``; each drawn as a line with markers,
        its first point circled and its last point marked with a star.
    out_path : path-like
        The PNG to write (atomically: a temporary file renamed into place).
    title : str
    vocabulary : sequence of Emotion, optional
        Labelled points (default: :func:`load_vocabulary`).

    Returns
    -------
    Path
        ``out_path``.
    """
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    fig = Figure(figsize=(7.0, 7.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw_frame(ax, vocabulary)
    for i, (label, points) in enumerate(paths):
        if not points:
            continue
        color = f"C{i % 10}"
        v = [p.valence for p in points]
        a = [p.arousal for p in points]
        ax.plot(v, a, "-o", color=color, markersize=3.5, linewidth=1.6, label=label, zorder=3)
        ax.scatter(v[:1], a[:1], s=90, facecolors="none", edgecolors=color, linewidths=1.6, zorder=4)
        ax.scatter(v[-1:], a[-1:], s=140, marker="*", color=color, zorder=4)
    if paths:
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return write_bytes_atomic(out_path, buffer.getvalue())
