"""Iso-principle planner: from the current emotional state to the target, clip by clip."""

from musicmed_stream.planner.types import VA, PathShape, Plan, PlanSettings, Segment

__all__ = ["VA", "PathShape", "Plan", "PlanSettings", "Segment"]
