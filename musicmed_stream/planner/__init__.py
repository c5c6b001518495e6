"""Iso-principle planner: from the current emotional state to the target, clip by clip.

The data types load eagerly; the planner functions load on first use (PEP 562), because
``musicmed_stream.emotion`` builds on :mod:`musicmed_stream.planner.types` and the planner in
turn builds on the emotion model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from musicmed_stream.planner.types import VA, PathShape, Plan, PlanSettings, Segment, played_seconds

if TYPE_CHECKING:
    from musicmed_stream.planner.iso import clip_grid, clip_step, plan_session, replan, validate_settings
    from musicmed_stream.planner.statistics import (
        StatisticsError,
        TagStatistics,
        builtin_palette,
        load_jamendo_statistics,
    )

_LAZY = {
    "clip_grid": "iso",
    "clip_step": "iso",
    "plan_session": "iso",
    "replan": "iso",
    "validate_settings": "iso",
    "StatisticsError": "statistics",
    "TagStatistics": "statistics",
    "builtin_palette": "statistics",
    "load_jamendo_statistics": "statistics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"musicmed_stream.planner.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "VA",
    "PathShape",
    "Plan",
    "PlanSettings",
    "Segment",
    "StatisticsError",
    "TagStatistics",
    "builtin_palette",
    "clip_grid",
    "clip_step",
    "load_jamendo_statistics",
    "plan_session",
    "played_seconds",
    "replan",
    "validate_settings",
]
