"""A point on Russell's valence-arousal circumplex: the coordinate every stage speaks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VA:
    """A point on Russell's circumplex; valence and arousal in [-1, 1]."""

    valence: float
    arousal: float


__all__ = ["VA"]
