"""Iso-principle trajectories on the circumplex: pure functions of start, target and clip count.

A path is a progress schedule (0 at the start state, 1 at the target) turned into points by a
shape: ``line`` interpolates valence and arousal; ``arc`` interpolates angle and radius in polar
coordinates so that the music keeps its emotional intensity instead of passing through the
neutral centre.
"""

from __future__ import annotations

import math

import numpy as np

from musicmed_stream.emotion.point import VA
from musicmed_stream.planner.types import PathShape


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


# The most arc length per unit of progress while an arc turns near a state inside the minimum
# radius: fast enough to head along the other state's bearing after a clip or two, slow enough
# that no step is a jump (with 40 clips, a turn moves at most 5 / 37 = 0.14 per clip).
TURN_PACE = 5.0


def _angle_schedule(
    progress: np.ndarray, r0: float, r1: float, turn: float, length: float, inside: float
) -> np.ndarray:
    """Fraction of the turn made at each progress value.

    Between two states outside the minimum radius the angle moves evenly. A state inside it sits
    near the neutral centre, where its own angle says little: the arc makes its turn near that
    state, at the inner state's radius, moving at most ``TURN_PACE`` per unit of progress (so
    it goes round the centre, not through it), then heads out along the other state's bearing.
    """
    r_in = min(r0, r1)
    if r_in >= inside or length == 0.0:
        return progress
    # The turn takes the progress ``span`` at which its arc length, at the radius reached by then,
    # is ``TURN_PACE`` per unit of progress; a slow enough pace is the plain even turn.
    grow = abs(r1 - r0) * abs(turn)
    span = 1.0 if grow >= TURN_PACE else min(1.0, r_in * abs(turn) / (TURN_PACE - grow))
    # Progress away from the inner state: the turn is made near it, at the start or at the end.
    away = progress if r0 <= r1 else 1.0 - progress
    done = (away > 0.0).astype(np.float64) if span < 1e-12 else np.clip(away / span, 0.0, 1.0)
    return done if r0 <= r1 else 1.0 - done


def arc_points(start: VA, target: VA, progress: np.ndarray, min_radius: float) -> np.ndarray:
    """Points on the polar arc from ``start`` to ``target`` at each progress value.

    Angle and radius are interpolated, so the arc never comes nearer the neutral centre than the
    nearer of the two states; between two states outside ``min_radius`` the radius is held at
    ``min_radius`` or more. With a state inside ``min_radius`` the arc turns near that state (see
    :func:`_angle_schedule`) and keeps at least its radius: where the straight line passes through
    the centre the arc goes round it, without a jump on the first step.
    """
    r0, theta0 = _polar(start)
    r1, theta1 = _polar(target)
    # A state at the minimum radius up to rounding (e.g. from polar coordinates) counts as outside.
    inside = min_radius - 1e-9
    turn = _wrapped_turn(theta0, theta1)
    length = math.hypot(target.valence - start.valence, target.arousal - start.arousal)
    radius = r0 + (r1 - r0) * progress
    if min(r0, r1) >= inside:
        interior = (progress > 0.0) & (progress < 1.0)
        radius = np.where(interior, np.maximum(radius, min_radius), radius)
    angle = theta0 + turn * _angle_schedule(progress, r0, r1, turn, length, inside)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])


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
        The arc's smallest radius between its ends; where a state lies inside it, the arc keeps
        that state's radius instead.

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
