"""The emotion vocabulary: named points on Russell's valence-arousal circumplex.

Coordinates come from the Warriner, Kuperman & Brysbaert (2013) norms, placed on the circle by an
order-keeping transform that fills it (:func:`musicmed_stream.emotion.norms.to_circumplex`: each
axis standardised within the vocabulary, squashed with tanh and scaled by 1/sqrt(2), so no point
lies outside the unit circle; see ``docs/emotion_model.md``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import ConfigError


class VocabularyError(ConfigError):
    """A vocabulary file that is missing, malformed or holds out-of-range coordinates."""


@dataclass(frozen=True)
class Emotion:
    """A named emotion on the circumplex.

    Attributes
    ----------
    name : str
        Lower-case English word, e.g. ``"calm"``.
    valence, arousal : float
        Coordinates in [-1, 1].
    source : str
        Where the coordinates come from.
    """

    name: str
    valence: float
    arousal: float
    source: str = ""

    @property
    def va(self) -> VA:
        return VA(self.valence, self.arousal)


def data_path(name: str) -> Path:
    """Path of a file shipped in ``musicmed_stream/data``."""
    return Path(str(resources.files("musicmed_stream").joinpath("data", name)))


def read_json(path: str | os.PathLike[str], what: str, error: type[ConfigError] = ConfigError) -> Any:
    """Read a JSON file, turning I/O and syntax problems into ``error`` with one clear line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file, ``(0, -1)`` if absent: a cache key that sees edits."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, -1)
    return (info.st_mtime_ns, info.st_size)


def in_range(value: Any) -> bool:
    """Whether ``value`` is a finite real number within [-1, 1]."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -1.0 <= value <= 1.0
    )


def _parse_vocabulary(data: Any, where: str) -> tuple[Emotion, ...]:
    entries = data.get("emotions") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise VocabularyError(f"vocabulary {where} needs a non-empty list under 'emotions'")
    default_source = str(data.get("source", ""))
    emotions: list[Emotion] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise VocabularyError(f"vocabulary {where}: entry {i} needs a 'name' string")
        name = entry["name"].strip().lower()
        if name in seen:
            raise VocabularyError(f"vocabulary {where}: emotion {name!r} appears twice")
        for key in ("valence", "arousal"):
            if not in_range(entry.get(key)):
                raise VocabularyError(
                    f"vocabulary {where}: {name!r} {key} must be a number in [-1, 1], got {entry.get(key)!r}"
                )
        seen.add(name)
        emotions.append(
            Emotion(
                name,
                float(entry["valence"]),
                float(entry["arousal"]),
                str(entry.get("source", default_source)),
            )
        )
    return tuple(emotions)


@lru_cache(maxsize=8)
def _load_cached(path: str, stamp: tuple[int, int]) -> tuple[Emotion, ...]:
    return _parse_vocabulary(read_json(path, "vocabulary file", VocabularyError), path)


def load_vocabulary(path: str | os.PathLike[str] | None = None) -> tuple[Emotion, ...]:
    """Load the emotion vocabulary.

    Parameters
    ----------
    path : path-like, optional
        A JSON file ``{"emotions": [{"name", "valence", "arousal", "source"?}, ...]}``; the
        built-in Warriner-based vocabulary (``data/emotions.json``) when omitted.

    Returns
    -------
    tuple of Emotion
        In file order (ties in :func:`nearest_emotion` go to the earlier entry).

    Raises
    ------
    VocabularyError
        If the file cannot be read or an entry is malformed.
    """
    resolved = data_path("emotions.json") if path is None else Path(path)
    resolved = resolved.resolve()
    return _load_cached(str(resolved), file_stamp(resolved))


def squared_distance(a: VA, b: VA) -> float:
    """Squared Euclidean distance between two circumplex points."""
    return (a.valence - b.valence) ** 2 + (a.arousal - b.arousal) ** 2


def nearest_emotion(va: VA, vocabulary: tuple[Emotion, ...] | None = None) -> Emotion:
    """The vocabulary emotion closest to ``va`` (Euclidean; ties go to the earlier entry)."""
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    if not vocabulary:
        raise VocabularyError("the emotion vocabulary is empty")
    return min(vocabulary, key=lambda e: squared_distance(va, e.va))


def emotion_by_name(vocabulary: tuple[Emotion, ...]) -> dict[str, Emotion]:
    """Index a vocabulary by name."""
    return {e.name: e for e in vocabulary}
