"""Music emotion recognition metrics: macro AUPRC and Hamming score over mood tags.

A backend scores every clip against every mood tag (``(n_clips, n_tags)``); the truth is the
plan's intended mood tag per clip (one positive per row). Predictions for the Hamming score are the
``top_k`` best-scoring tags of each clip (default 1, as each clip has exactly one intended tag), or
every tag scoring at least ``threshold`` when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score


def one_hot(labels: Sequence[str], tags: Sequence[str]) -> np.ndarray:
    """Binary matrix ``(len(labels), len(tags))`` with a 1 at each label's tag."""
    index = {tag: i for i, tag in enumerate(tags)}
    missing = sorted({label for label in labels if label not in index})
    if missing:
        raise ValueError(f"labels not among the tags: {', '.join(missing)}")
    truth = np.zeros((len(labels), len(tags)), dtype=int)
    for row, label in enumerate(labels):
        truth[row, index[label]] = 1
    return truth


def auprc_macro(truth: np.ndarray, scores: np.ndarray) -> float:
    """Macro-averaged area under the precision-recall curve (average precision) over tags.

    Only tags with at least one positive clip take part: a tag that no clip intends has no
    precision-recall curve (sklearn would warn and score it 0).
    """
    truth = np.asarray(truth)
    present = truth.sum(axis=0) > 0
    if not np.any(present):
        return float("nan")
    return float(average_precision_score(truth[:, present], np.asarray(scores)[:, present], average="macro"))


def predict(scores: np.ndarray, top_k: int = 1, threshold: float | None = None) -> np.ndarray:
    """Binary predictions: the ``top_k`` tags per clip, or every tag with score >= ``threshold``."""
    scores = np.asarray(scores, dtype=float)
    if threshold is not None:
        return (scores >= threshold).astype(int)
    predicted = np.zeros(scores.shape, dtype=int)
    # Stable sort on the negated scores: ties go to the earlier tag, deterministically.
    best = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    np.put_along_axis(predicted, best, 1, axis=1)
    return predicted


def hamming_score(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over clips of |pred ∩ true| / |pred ∪ true| (a clip with both empty scores 1)."""
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    union = (truth | predicted).sum(axis=1)
    inter = (truth & predicted).sum(axis=1)
    per_clip = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(per_clip.mean())
