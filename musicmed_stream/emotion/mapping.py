"""The MTG-Jamendo mood/theme tags, each a circumplex emotion (mood) or a theme with no affect.

A mapping file is JSON::

    {"source": "...", "tags": {"calm": {"kind": "mood", "emotion": "calm"},
                               "christmas": {"kind": "theme"}, ...}}

Mood tags sit at their emotion's coordinates; theme tags (occasions, media, places) are never
used as emotion anchors. Tags may carry the dataset's ``mood/theme---`` prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from musicmed_stream.emotion.point import VA
from musicmed_stream.emotion.vocabulary import (
    Emotion,
    data_path,
    emotion_by_name,
    file_stamp,
    load_vocabulary,
    read_json,
    squared_distance,
)
from musicmed_stream.errors import ConfigError

TAG_PREFIX = "mood/theme---"
TagKind = Literal["mood", "theme"]


class MappingError(ConfigError):
    """A tag mapping file that is missing, malformed or names unknown emotions."""


def strip_tag(tag: str) -> str:
    """``"mood/theme---Calm "`` -> ``"calm"``."""
    tag = tag.strip().lower()
    return tag[len(TAG_PREFIX) :] if tag.startswith(TAG_PREFIX) else tag


@dataclass(frozen=True)
class TagEntry:
    """One tag of the mapping."""

    tag: str
    kind: TagKind
    emotion: Emotion | None = None


@dataclass(frozen=True)
class TagMapping:
    """Mood/theme tags mapped to circumplex emotions.

    Attributes
    ----------
    entries : tuple of TagEntry
        In file order; mood entries carry their :class:`Emotion`.
    source : str
        Description of where the mapping comes from.
    path : str
        The user file it was loaded from; empty for the built-in mapping.
    """

    entries: tuple[TagEntry, ...]
    source: str = ""
    path: str = ""
    _index: dict[str, TagEntry] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {e.tag: e for e in self.entries})

    def get(self, tag: str) -> TagEntry | None:
        """The entry of ``tag`` (prefix and case ignored), or ``None``."""
        return self._index.get(strip_tag(tag))

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(e.tag for e in self.entries)

    @property
    def mood_entries(self) -> tuple[TagEntry, ...]:
        return tuple(e for e in self.entries if e.kind == "mood")

    @property
    def theme_tags(self) -> tuple[str, ...]:
        return tuple(e.tag for e in self.entries if e.kind == "theme")

    def va(self, tag: str) -> VA:
        """Circumplex point of a mood tag; ``MappingError`` for themes and unknown tags."""
        entry = self.get(tag)
        if entry is None:
            raise MappingError(f"tag {tag!r} is not in the mapping")
        if entry.emotion is None:
            raise MappingError(f"tag {entry.tag!r} is a theme, not an emotion")
        return entry.emotion.va

    def to_dict(self) -> dict[str, Any]:
        """The file format (``load_tag_mapping`` reads it back)."""
        tags: dict[str, Any] = {}
        for e in self.entries:
            tags[e.tag] = {"kind": e.kind} | ({"emotion": e.emotion.name} if e.emotion else {})
        return {"source": self.source, "tags": tags}


def parse_tag_mapping(data: Any, where: str, vocabulary: tuple[Emotion, ...]) -> TagMapping:
    """Validate mapping data (already parsed JSON) against ``vocabulary``.

    Raises
    ------
    MappingError
        Naming the offending tag and what is wrong with it.
    """
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, dict) or not tags:
        raise MappingError(f"mapping {where} needs a non-empty object under 'tags'")
    by_name = emotion_by_name(vocabulary)
    entries: list[TagEntry] = []
    seen: set[str] = set()
    for raw_tag, spec in tags.items():
        tag = strip_tag(str(raw_tag))
        if not tag:
            raise MappingError(f"mapping {where}: empty tag name")
        if tag in seen:
            raise MappingError(f"mapping {where}: tag {tag!r} appears twice")
        seen.add(tag)
        if not isinstance(spec, dict):
            raise MappingError(f"mapping {where}: tag {tag!r} must map to an object with 'kind'")
        kind = spec.get("kind")
        if kind not in ("mood", "theme"):
            raise MappingError(f"mapping {where}: tag {tag!r} has kind {kind!r}; use 'mood' or 'theme'")
        emotion = None
        if kind == "mood":
            name = spec.get("emotion")
            if not isinstance(name, str) or name.strip().lower() not in by_name:
                raise MappingError(
                    f"mapping {where}: mood tag {tag!r} names emotion {name!r}, not in the vocabulary"
                )
            emotion = by_name[name.strip().lower()]
        entries.append(TagEntry(tag, kind, emotion))
    if not any(e.kind == "mood" for e in entries):
        raise MappingError(f"mapping {where} has no mood tags")
    return TagMapping(tuple(entries), str(data.get("source", where)))


@lru_cache(maxsize=8)
def _load_cached(
    path: str, stamp: tuple[int, int], vocabulary: tuple[Emotion, ...], builtin: bool
) -> TagMapping:
    mapping = parse_tag_mapping(read_json(path, "mapping file", MappingError), path, vocabulary)
    return mapping if builtin else replace(mapping, path=path)


def load_tag_mapping(
    path: str | os.PathLike[str] | None = None, vocabulary: tuple[Emotion, ...] | None = None
) -> TagMapping:
    """Load a mood/theme tag mapping.

    Parameters
    ----------
    path : path-like, optional
        A mapping JSON file; the built-in mapping of the 59 MTG-Jamendo tags when omitted.
    vocabulary : tuple of Emotion, optional
        Emotions the mapping may name (default: :func:`load_vocabulary`).

    Raises
    ------
    MappingError
        If the file cannot be read, is malformed, or names an emotion not in the vocabulary.
    """
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    resolved = data_path("moodtheme_mapping.json") if path is None else Path(path)
    resolved = resolved.resolve()
    return _load_cached(str(resolved), file_stamp(resolved), vocabulary, path is None)


def mood_tag_for(va: VA, mapping: TagMapping | None = None) -> str:
    """The mood-kind tag nearest to ``va`` (ties go to the earlier tag in the mapping)."""
    mapping = load_tag_mapping() if mapping is None else mapping
    moods = mapping.mood_entries
    if not moods:
        raise MappingError("the tag mapping has no mood tags")
    return min(moods, key=lambda e: squared_distance(va, e.emotion.va)).tag  # type: ignore[union-attr]
