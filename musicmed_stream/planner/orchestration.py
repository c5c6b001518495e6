"""Instrument and genre of each clip, drawn from the tag statistics of its mood.

Rules (see ``docs/planner.md``):

- The first clip takes the mode of its mood's distribution at temperature 0, otherwise a draw
  from the distribution sharpened or flattened by temperature: ``p^(1/T)``, normalized.
- On every later clip, each of instrument and genre changes with probability
  ``1 - exp(-T)`` (never at ``T = 0``), to a draw other than the current one.
- When the mood tag changes, a current instrument or genre that is *plausible* for the new
  mood (at least ``PLAUSIBLE_SHARE`` of that mood's tags) is kept, so the music does not jump;
  one that is not is redrawn from the new mood (at ``T = 0`` nothing ever changes).
- Tags that name no synthesizable sound source (``voice``, ``computer``, ``sampler``) are
  skipped; the statistics themselves keep them.
- The clinical palette: excluded genres and instruments (``PlanSettings.exclude_genres`` and
  ``exclude_instruments``) are never drawn; the rest of the mood's counts is renormalised. A
  mood left with nothing falls back to the built-in palette's group for the mood, then to the
  counts over all moods, both less the exclusions (:func:`palette_counts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from musicmed_stream.planner.statistics import StatisticsError, TagStatistics, builtin_palette

PLAUSIBLE_SHARE = 0.03
SKIPPED_INSTRUMENTS = frozenset({"voice", "computer", "sampler"})


def usable(counts: Mapping[str, int], skip: frozenset[str] = frozenset()) -> dict[str, int]:
    """Counts without skipped tags, in a stable (sorted) order."""
    return {tag: counts[tag] for tag in sorted(counts) if tag not in skip and counts[tag] > 0}


def tempered_probabilities(counts: Mapping[str, int], temperature: float) -> np.ndarray:
    """``p^(1/T)`` normalized (computed in log space); ``T = 0`` puts all mass on the mode."""
    values = np.array(list(counts.values()), dtype=np.float64)
    if temperature == 0.0:
        probabilities = np.zeros_like(values)
        probabilities[int(np.argmax(values))] = 1.0  # first maximum: ties go to the sorted-first tag
        return probabilities
    log_p = np.log(values / values.sum())
    # Shift before dividing: at a tiny T the mode stays at exp(0) and the rest underflow to 0.
    with np.errstate(over="ignore", under="ignore"):
        weights = np.exp((log_p - log_p.max()) / temperature)
    return weights / weights.sum()


def draw(counts: Mapping[str, int], temperature: float, rng: np.random.Generator, exclude: str = "") -> str:
    """One tag from ``counts`` at ``temperature``, avoiding ``exclude`` when anything else is left."""
    pool = {tag: c for tag, c in counts.items() if tag != exclude} or dict(counts)
    probabilities = tempered_probabilities(pool, temperature)
    return list(pool)[int(rng.choice(len(pool), p=probabilities))]


def change_probability(temperature: float) -> float:
    """Chance that a clip changes instrument (or genre) within the same mood: ``1 - exp(-T)``."""
    return 1.0 - math.exp(-temperature)


def plausible(tag: str, counts: Mapping[str, int]) -> bool:
    """Whether ``tag`` has at least ``PLAUSIBLE_SHARE`` of the counts."""
    total = sum(counts.values())
    return total > 0 and counts.get(tag, 0) / total >= PLAUSIBLE_SHARE


def next_tag(
    current: str | None,
    counts: Mapping[str, int],
    mood_changed: bool,
    temperature: float,
    rng: np.random.Generator,
) -> str:
    """The tag of the next clip given the current one (``None`` for the first clip)."""
    if current is None:
        return draw(counts, temperature, rng)
    if temperature == 0.0:
        return current
    if mood_changed:
        return current if plausible(current, counts) else draw(counts, temperature, rng, exclude=current)
    if rng.random() < change_probability(temperature):
        return draw(counts, temperature, rng, exclude=current)
    return current


def palette_counts(
    statistics: TagStatistics, mood: str, kind: str, exclude: frozenset[str] = frozenset()
) -> dict[str, int]:
    """The counts a clip of ``mood`` draws its ``kind`` (``"instrument"``/``"genre"``) from.

    The mood's counts less skipped and excluded tags (the draw renormalises what is left). When
    the exclusions leave nothing: the built-in palette's counts for the mood, then the counts
    of ``statistics`` over all moods, then the built-in palette's over all moods, each less
    the exclusions.

    Raises
    ------
    StatisticsError
        When ``statistics`` has no counts for the mood at all, or the exclusions remove every tag
        of every fallback (the message names ``exclude_genres``/``exclude_instruments``).
    """
    skip = SKIPPED_INSTRUMENTS if kind == "instrument" else frozenset()

    def of(source: TagStatistics, at: str | None) -> dict[str, int]:
        if at is None:
            return source.overall_counts(kind)
        return source.instrument_counts(at) if kind == "instrument" else source.genre_counts(at)

    counts = usable(of(statistics, mood), skip)
    if not counts:
        raise StatisticsError(f"{statistics.source}: no instrument or genre statistics for mood {mood!r}")
    if not exclude:
        return counts
    builtin = builtin_palette()
    candidates = [(statistics, mood), (statistics, None), (builtin, None)]
    if mood in (builtin.instruments if kind == "instrument" else builtin.genres):
        candidates.insert(1, (builtin, mood))
    for source, at in candidates:
        pool = usable(of(source, at), skip | exclude)
        if pool:
            return pool
    raise StatisticsError(f"exclude_{kind}s leaves no {kind} to draw for mood {mood!r}")


def orchestrate(
    moods: list[str],
    statistics: TagStatistics,
    temperature: float,
    rng: np.random.Generator,
    previous: tuple[str, str, str] | None = None,
    *,
    exclude_instruments: frozenset[str] = frozenset(),
    exclude_genres: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """``(instrument, genre)`` for each clip's mood tag.

    Parameters
    ----------
    moods : list of str
        Mood tag of each clip.
    statistics : TagStatistics
    temperature : float
    rng : np.random.Generator
    previous : (mood, instrument, genre), optional
        The clip before the first one (a re-plan continues from it).
    exclude_instruments, exclude_genres : frozenset of str
        Tags never drawn (:func:`palette_counts`); an excluded ``previous`` one is redrawn.
    """
    mood, instrument, genre = previous if previous is not None else (None, None, None)
    # A previous clip of an excluded tag (a plan made before the list changed) is not continued.
    instrument = None if instrument in exclude_instruments else instrument
    genre = None if genre in exclude_genres else genre
    out: list[tuple[str, str]] = []
    for clip_mood in moods:
        changed = mood is not None and clip_mood != mood
        instruments = palette_counts(statistics, clip_mood, "instrument", exclude_instruments)
        genres = palette_counts(statistics, clip_mood, "genre", exclude_genres)
        instrument = next_tag(instrument, instruments, changed, temperature, rng)
        genre = next_tag(genre, genres, changed, temperature, rng)
        mood = clip_mood
        out.append((instrument, genre))
    return out
