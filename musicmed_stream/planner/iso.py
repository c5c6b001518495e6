"""The iso-principle planner: match the listener's state, then lead step by step to the target.

A session is a grid of clips, overlapped by the audio chain's crossfade. The first
``match_clips`` clips stay at the start state, the transition clips move evenly along the path
(``line`` or ``arc``), and the last ``settle_clips`` sit at the target. Each clip gets the
nearest vocabulary emotion, the nearest mood tag, and an instrument and genre drawn from that
mood's tag statistics, less the clinical palette's excluded genres and instruments.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.bounds import MAX_CLIPS, check
from musicmed_stream.emotion import (
    Emotion,
    TagMapping,
    check_va,
    format_va,
    load_tag_mapping,
    load_vocabulary,
    mood_tag_for,
    nearest_emotion,
    resolve_state,
)
from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import ConfigError
from musicmed_stream.planner.orchestration import orchestrate
from musicmed_stream.planner.path import path_points, progress_schedule
from musicmed_stream.planner.statistics import (
    TagStatistics,
    builtin_palette,
    exclusion_set,
    load_jamendo_statistics,
)
from musicmed_stream.planner.types import Plan, PlanSettings, Segment


def validate_settings(settings: PlanSettings, statistics: TagStatistics | None = None) -> PlanSettings:
    """Return ``settings`` if every value is usable, else raise ``ConfigError`` naming the key.

    Each field is checked against its bounded type (:mod:`musicmed_stream.bounds`, the ranges the
    configuration and the control protocol share); then the rules that tie fields together. The
    exclusion lists may name MTG-Jamendo tags and the tags of ``statistics``."""
    hints = typing.get_type_hints(PlanSettings, include_extras=True)
    for f in dataclasses.fields(PlanSettings):
        if f.name not in ("exclude_genres", "exclude_instruments"):
            check(f.name, hints[f.name], getattr(settings, f.name))
    if settings.clip_seconds > settings.minutes * 60:
        raise ConfigError(
            f"clip_seconds ({settings.clip_seconds:g} s) is longer than the session "
            f"({settings.minutes * 60:g} s = {settings.minutes:g} min)"
        )
    clips = len(clip_grid(settings))
    if clips > MAX_CLIPS:
        raise ConfigError(
            f"{settings.minutes:g} minutes of {settings.clip_seconds:g}-s clips make {clips} clips; "
            f"at most {MAX_CLIPS}: choose longer clips"
        )
    exclusions(settings, statistics)
    return settings


def exclusions(
    settings: PlanSettings, statistics: TagStatistics | None = None
) -> tuple[frozenset[str], frozenset[str]]:
    """``(instruments, genres)`` the plan never draws: ``settings``' exclusion lists, spelling
    variants resolved; ``ConfigError`` naming the key for a name that is no known tag."""
    return (
        exclusion_set(settings.exclude_instruments, "instrument", "exclude_instruments", statistics),
        exclusion_set(settings.exclude_genres, "genre", "exclude_genres", statistics),
    )


def clip_step(settings: PlanSettings) -> float:
    """Seconds from one clip's start to the next in the played session: a clip less its overlap."""
    return settings.clip_seconds * (1.0 - settings.crossfade_fraction)


def clip_grid(settings: PlanSettings) -> list[tuple[float, float]]:
    """``(start_s, duration_s)`` of each clip, ``start_s`` in the played session.

    Every clip is ``clip_seconds`` long and overlaps the next by ``o = crossfade_fraction *
    clip_seconds`` (the audio chain's crossfade), so ``n`` clips play for ``o + n * (c - o)``
    seconds. ``n = round((T - o) / (c - o))`` (half rounds up, at least one) makes that the
    closest to the requested ``T = minutes * 60``: within half a step ``(c - o) / 2``. No clip is
    cut short: a shorter last clip would also shorten its crossfade, and the engines make whole
    clips best.
    """
    total = settings.minutes * 60
    step = clip_step(settings)
    overlap = settings.clip_seconds - step
    n = max(1, math.floor((total - overlap) / step + 0.5))
    return [(i * step, float(settings.clip_seconds)) for i in range(n)]


def _resolve(
    spec: str | VA, what: str, vocabulary: tuple[Emotion, ...], mapping: TagMapping
) -> tuple[VA, str]:
    if isinstance(spec, VA):
        va = check_va(spec, what)
        return va, format_va(va)
    return resolve_state(spec, vocabulary, mapping)


def _segments(
    points: list[VA],
    grid: list[tuple[float, float]],
    first_index: int,
    statistics: TagStatistics,
    settings: PlanSettings,
    rng: np.random.Generator,
    vocabulary: tuple[Emotion, ...],
    mapping: TagMapping,
    previous: Segment | None = None,
) -> list[Segment]:
    moods = [mood_tag_for(p, mapping) for p in points]
    before = (previous.mood, previous.instrument, previous.genre) if previous else None
    no_instruments, no_genres = exclusions(settings, statistics)
    sounds = orchestrate(
        moods,
        statistics,
        settings.temperature,
        rng,
        before,
        exclude_instruments=no_instruments,
        exclude_genres=no_genres,
    )
    return [
        Segment(
            index=first_index + i,
            start_s=start_s,
            duration_s=duration_s,
            valence=point.valence,
            arousal=point.arousal,
            emotion=nearest_emotion(point, vocabulary).name,
            mood=mood,
            instrument=instrument,
            genre=genre,
        )
        for i, (point, (start_s, duration_s), mood, (instrument, genre)) in enumerate(
            zip(points, grid, moods, sounds, strict=True)
        )
    ]


def plan_session(
    start: str | VA,
    target: str | VA,
    settings: PlanSettings = PlanSettings(),  # noqa: B008 - frozen, so sharing the default is safe
    statistics: TagStatistics | None = None,
    *,
    mapping: TagMapping | None = None,
    vocabulary: tuple[Emotion, ...] | None = None,
) -> Plan:
    """Plan a session from ``start`` to ``target`` following the iso principle.

    Parameters
    ----------
    start, target : str or VA
        Emotion name, mood tag, ``"v,a"`` or a point (see :func:`resolve_state`).
    settings : PlanSettings
        Its ``exclude_genres`` and ``exclude_instruments`` are never drawn (the clinical palette).
    statistics : TagStatistics, optional
        Instrument/genre tag counts per mood; :func:`builtin_palette` when omitted.
    mapping, vocabulary : optional
        Default: the built-in tag mapping and emotion vocabulary.

    Returns
    -------
    Plan
        ``meta`` records the statistics and mapping sources and an empty ``replans`` list.

    Raises
    ------
    ConfigError
        For invalid settings; ``UnknownEmotionError`` for unresolvable states.
    """
    statistics = builtin_palette() if statistics is None else statistics
    validate_settings(settings, statistics)
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    mapping = load_tag_mapping(vocabulary=vocabulary) if mapping is None else mapping
    start_va, start_label = _resolve(start, "start", vocabulary, mapping)
    target_va, target_label = _resolve(target, "target", vocabulary, mapping)
    grid = clip_grid(settings)
    progress = progress_schedule(len(grid), settings.match_clips, settings.settle_clips)
    points = path_points(start_va, target_va, progress, settings.path, settings.arc_min_radius)
    rng = np.random.default_rng(settings.seed)
    segments = _segments(points, grid, 0, statistics, settings, rng, vocabulary, mapping)
    meta = {"statistics": statistics.source, "mapping": mapping.path or "builtin", "replans": []}
    return Plan(start_va, target_va, settings, tuple(segments), start_label, target_label, meta)


def _statistics_from_meta(meta: dict[str, Any]) -> TagStatistics:
    source = meta.get("statistics", "builtin")
    if source and source != "builtin" and Path(source).is_dir():
        return load_jamendo_statistics(source)
    return builtin_palette()


def _mapping_from_meta(meta: dict[str, Any], vocabulary: tuple[Emotion, ...]) -> TagMapping:
    source = meta.get("mapping", "")
    if source and Path(source).is_file():
        return load_tag_mapping(source, vocabulary)
    return load_tag_mapping(vocabulary=vocabulary)


def replan(
    plan: Plan,
    from_index: int,
    position: VA,
    new_target: str | VA,
    statistics: TagStatistics | None = None,
    *,
    mapping: TagMapping | None = None,
    vocabulary: tuple[Emotion, ...] | None = None,
    match_clips: int = 0,
) -> Plan:
    """Re-plan the rest of a session toward a new target, from where the listener is.

    Segments before ``from_index`` are kept unchanged. From ``from_index`` on, the same clip
    grid is re-planned from ``position`` to ``new_target``: the listener was already met where
    they are, so the first re-planned clip already takes the first step (``match_clips`` clips
    stay at ``position`` first when asked: a new matching phase), the transition follows the
    plan's path shape, and the settle phase is kept. Re-targets in quick succession therefore
    never hold the music in place. Instrument and genre continue from the last kept clip,
    within the plan's clinical palette (``plan.settings``' exclusion lists).

    Parameters
    ----------
    plan : Plan
    from_index : int
        First segment to re-plan, within ``[0, len(plan.segments))``.
    position : VA
        The listener's current point.
    new_target : str or VA
    statistics, mapping, vocabulary : optional
        Default: the ones the plan was made with when its ``meta`` names a folder or file that
        is still there, else the built-in ones.

    Returns
    -------
    Plan
        With ``target`` set to the new target and the re-plan appended to ``meta["replans"]``.
    """
    n = len(plan.segments)
    if not isinstance(from_index, int) or isinstance(from_index, bool) or not 0 <= from_index < n:
        raise ConfigError(f"from_index must be a segment index within [0, {n}), got {from_index!r}")
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    mapping = _mapping_from_meta(plan.meta, vocabulary) if mapping is None else mapping
    statistics = _statistics_from_meta(plan.meta) if statistics is None else statistics
    settings = plan.settings
    here = check_va(position, "position")
    target_va, target_label = _resolve(new_target, "target", vocabulary, mapping)
    kept = list(plan.segments[:from_index])
    grid = [(s.start_s, s.duration_s) for s in plan.segments[from_index:]]
    progress = progress_schedule(len(grid), match_clips, settings.settle_clips)
    points = path_points(here, target_va, progress, settings.path, settings.arc_min_radius)
    meta = copy.deepcopy(plan.meta)
    replans = meta.setdefault("replans", [])
    # A seed per re-plan: re-planning the same plan the same way gives the same clips.
    rng = np.random.default_rng([settings.seed, from_index, len(replans) + 1])
    previous = kept[-1] if kept else None
    segments = _segments(points, grid, from_index, statistics, settings, rng, vocabulary, mapping, previous)
    replans.append(
        {
            "from_index": from_index,
            "position": {"valence": here.valence, "arousal": here.arousal},
            "previous_target": {"valence": plan.target.valence, "arousal": plan.target.arousal},
            "previous_target_label": plan.target_label,
            "target": {"valence": target_va.valence, "arousal": target_va.arousal},
            "target_label": target_label,
        }
    )
    return Plan(plan.start, target_va, settings, tuple(kept + segments), plan.start_label, target_label, meta)
