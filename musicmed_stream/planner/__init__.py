"""Iso-principle planner: from the current emotional state to the target, clip by clip."""

from musicmed_stream.emotion.point import VA
from musicmed_stream.planner.iso import clip_grid, clip_step, plan_session, replan, validate_settings
from musicmed_stream.planner.statistics import (
    StatisticsError,
    TagStatistics,
    builtin_palette,
    load_jamendo_statistics,
)
from musicmed_stream.planner.types import PathShape, Plan, PlanSettings, Segment, played_seconds

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
