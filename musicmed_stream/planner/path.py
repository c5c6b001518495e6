"""Iso-principle trajectories on the circumplex: pure functions of start, target and clip count.

A path is a progress schedule (0 at the start state, 1 at the target) turned into points by a
shape: ``line`` interpolates valence and arousal; ``arc`` interpolates angle and radius in polar
coordinates so that the music keeps its emotional intensity instead of passing through the
neutral centre.
"""

from __future__ import annotations

import math

import numpy as np

from musicmed_stream.planner.types import VA, PathShape


def phase_lengths(n_clips: int, match_clips: int, settle_clips: int) -> tuple[int, int]:
    """Match and settle clip counts that fit in ``n_clips``.

    With three clips or more, at least one transition clip is kept so the music never jumps
    straight from the start state to the target. When the phases do not fit, the settle phase
    gives way first (the iso principle matches the listener before it leads).
    """
    room = n_clips - 1 if n_clips >= 3 else n_clips
    match, settle = max(0, match_clips), max(0, settle_clips)
    while match + settle > room:
        if settle >= match and settle > 0:
            settle -= 1
        else:
            match -= 1
    return match, settle


def progress_schedule(n_clips: int, match_clips: int, settle_clips: int) -> np.ndarray:
    """Progress from start (0) to target (1) of each clip.

    The first ``match_clips`` clips are 0, the last ``settle_clips`` are 1, and the transition
    clips in between step evenly: transition clip ``k`` of ``t`` is at ``k / (t + 1)``.
    """
    match, settle = phase_lengths(n_clips, match_clips, settle_clips)
    transition = n_clips - match - settle
    steps = np.arange(1, transition + 1, dtype=np.float64) / (transition + 1)
    return np.concatenate([np.zeros(match), steps, np.ones(settle)])


def _polar(point: VA) -> tuple[float, float]:
    return math.hypot(point.valence, point.arousal), math.atan2(point.arousal, point.valence)


def _wrapped_turn(theta0: float, theta1: float) -> float:
    """Signed smallest turn from ``theta0`` to ``theta1``; a half turn goes through low arousal."""
    turn = (theta1 - theta0 + math.pi) % (2 * math.pi) - math.pi
    if math.isclose(abs(turn), math.pi, abs_tol=1e-12):
        # Exactly opposite: pass through the calm (low-arousal) half of the circle.
        mid_arousal = math.sin(theta0 + math.pi / 2)
        turn = math.pi if mid_arousal < 0 else -math.pi
    return turn


def arc_points(start: VA, target: VA, progress: np.ndarray, min_radius: float) -> np.ndarray:
    """Points on the polar arc from ``start`` to ``target`` at each progress value.

    Angle and radius are interpolated; between the ends the radius is held at ``min_radius`` or
    more. A state inside ``min_radius`` takes the other end's angle: that close to the neutral
    centre its own angle says little, and pushing outward along it could lead away from the
    other end.
    """
    r0, theta0 = _polar(start)
    r1, theta1 = _polar(target)
    # A state at the minimum radius up to rounding (e.g. from polar coordinates) counts as outside.
    inside = min_radius - 1e-9
    borrowed = r0 < inside or r1 < inside
    if r0 < inside:
        theta0 = theta1
    elif r1 < inside:
        theta1 = theta0
    turn = _wrapped_turn(theta0, theta1)
    radius = r0 + (r1 - r0) * progress
    interior = (progress > 0.0) & (progress < 1.0)
    radius = np.where(interior, np.maximum(radius, min_radius), radius)
    angle = theta0 + turn * progress
    points = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    if borrowed:
        # With a borrowed angle the arc's end lies away from the inner state itself: fade from the
        # straight line into the arc and back, so the path leaves and reaches both states smoothly.
        a = np.array([start.valence, start.arousal])
        b = np.array([target.valence, target.arousal])
        line = a + (b - a) * progress[:, None]
        weight = np.sin(np.pi * np.clip(progress, 0.0, 1.0))[:, None]
        points = line + weight * (points - line)
    return points


def monotone_toward(points: np.ndarray, target: VA) -> np.ndarray:
    """Pull any point that would move away from ``target`` back onto the previous distance.

    The point keeps its bearing from the target, so the path still turns the same way; the
    segment to the target lies in the valence-arousal square, so the result does too.
    """
    out = points.copy()
    goal = np.array([target.valence, target.arousal])
    best = np.inf
    for i, point in enumerate(out):
        offset = point - goal
        distance = float(np.hypot(*offset))
        if distance > best:
            out[i] = goal + offset * (best / distance)
            distance = best
        best = distance
    return out


def path_points(
    start: VA, target: VA, progress: np.ndarray, shape: PathShape = "line", min_radius: float = 0.5
) -> list[VA]:
    """The circumplex point of each clip.

    Parameters
    ----------
    start, target : VA
    progress : np.ndarray
        From :func:`progress_schedule`; 0 gives exactly ``start``, 1 exactly ``target``.
    shape : {"line", "arc"}
    min_radius : float
        The arc's smallest radius between its ends.

    Returns
    -------
    list of VA
        Inside [-1, 1]^2; the distance to ``target`` never increases along the path.
    """
    a = np.array([start.valence, start.arousal])
    b = np.array([target.valence, target.arousal])
    if shape == "line":
        points = a + (b - a) * progress[:, None]
    elif shape == "arc" and max(math.hypot(*a), math.hypot(*b)) < min_radius:
        points = a + (b - a) * progress[:, None]  # both near the centre: nothing to go around
    elif shape == "arc":
        points = np.clip(arc_points(start, target, progress, min_radius), -1.0, 1.0)
    else:
        raise ValueError(f"unknown path shape {shape!r}")
    points[progress == 0.0] = a
    points[progress == 1.0] = b
    points = monotone_toward(points, target)
    return [VA(float(v), float(ar)) for v, ar in points]
