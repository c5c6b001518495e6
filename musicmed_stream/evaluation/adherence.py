"""Path adherence: the measured valence/arousal of each clip against the planned iso path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.stats

from musicmed_stream.emotion.point import VA


def quadrant(point: VA) -> str:
    """Circumplex quadrant name: ``+V+A``, ``-V+A``, ``-V-A`` or ``+V-A`` (zero counts as positive)."""
    return f"{'+' if point.valence >= 0 else '-'}V{'+' if point.arousal >= 0 else '-'}A"


def _spearman(planned: np.ndarray, measured: np.ndarray) -> float:
    # Undefined for fewer than 3 clips or a constant axis (e.g. a plan that keeps arousal fixed).
    if planned.size < 3 or np.ptp(planned) == 0 or np.ptp(measured) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(planned, measured).statistic)


@dataclass(frozen=True)
class Adherence:
    """How closely the measured path follows the plan.

    ``spearman_*`` is nan where it is undefined (fewer than 3 clips, or a constant axis).
    """

    spearman_valence: float
    spearman_arousal: float
    mean_distance: float
    start_quadrant_planned: str
    start_quadrant_measured: str
    end_quadrant_planned: str
    end_quadrant_measured: str

    @property
    def start_quadrant_correct(self) -> bool:
        return self.start_quadrant_planned == self.start_quadrant_measured

    @property
    def end_quadrant_correct(self) -> bool:
        return self.end_quadrant_planned == self.end_quadrant_measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "start_quadrant_correct": self.start_quadrant_correct,
            "end_quadrant_correct": self.end_quadrant_correct,
        }


def path_adherence(planned: Sequence[VA], measured: Sequence[VA]) -> Adherence:
    """Spearman correlation per axis, mean Euclidean distance, start and end quadrants."""
    if len(planned) != len(measured) or not planned:
        raise ValueError("planned and measured paths must be non-empty and of equal length")
    p = np.array([[v.valence, v.arousal] for v in planned])
    m = np.array([[v.valence, v.arousal] for v in measured])
    return Adherence(
        spearman_valence=_spearman(p[:, 0], m[:, 0]),
        spearman_arousal=_spearman(p[:, 1], m[:, 1]),
        mean_distance=float(np.mean(np.linalg.norm(p - m, axis=1))),
        start_quadrant_planned=quadrant(planned[0]),
        start_quadrant_measured=quadrant(measured[0]),
        end_quadrant_planned=quadrant(planned[-1]),
        end_quadrant_measured=quadrant(measured[-1]),
    )
