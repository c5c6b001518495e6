"""Russell's valence-arousal circumplex: the emotion vocabulary, the MTG-Jamendo tag mapping and
the resolution of user-given states (name, mood tag or coordinates)."""

from musicmed_stream.emotion.mapping import (
    MappingError,
    TagEntry,
    TagMapping,
    load_tag_mapping,
    mood_tag_for,
    parse_tag_mapping,
    strip_tag,
)
from musicmed_stream.emotion.point import VA
from musicmed_stream.emotion.resolve import check_va, format_va, resolve_state
from musicmed_stream.emotion.vocabulary import Emotion, VocabularyError, load_vocabulary, nearest_emotion

__all__ = [
    "VA",
    "Emotion",
    "MappingError",
    "TagEntry",
    "TagMapping",
    "VocabularyError",
    "check_va",
    "format_va",
    "load_tag_mapping",
    "load_vocabulary",
    "mood_tag_for",
    "nearest_emotion",
    "parse_tag_mapping",
    "resolve_state",
    "strip_tag",
]
