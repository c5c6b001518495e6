"""Turn what a user types (emotion name, mood tag or ``"v,a"``) into a circumplex point."""

from __future__ import annotations

import difflib
import re

from musicmed_stream.emotion.mapping import TAG_PREFIX, TagMapping, load_tag_mapping, strip_tag
from musicmed_stream.emotion.point import VA
from musicmed_stream.emotion.vocabulary import Emotion, emotion_by_name, in_range, load_vocabulary
from musicmed_stream.errors import UnknownEmotionError

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COORDINATES = re.compile(rf"^\s*\(?\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*\)?\s*$")


def format_va(va: VA) -> str:
    """``VA(0.3, -0.25)`` -> ``"+0.30,-0.25"`` (a label that :func:`resolve_state` reads back)."""
    return f"{va.valence:+.2f},{va.arousal:+.2f}"


def check_va(va: VA, what: str = "point") -> VA:
    """Return ``va`` if both coordinates are finite and within [-1, 1], else raise."""
    if not (in_range(va.valence) and in_range(va.arousal)):
        raise UnknownEmotionError(
            f"{what} ({va.valence}, {va.arousal}) is outside the circumplex: "
            "valence and arousal must be within [-1, 1]"
        )
    return VA(float(va.valence), float(va.arousal))


def resolve_state(
    spec: str | VA, vocabulary: tuple[Emotion, ...] | None = None, mapping: TagMapping | None = None
) -> tuple[VA, str]:
    """Resolve an emotional state given by name, mood tag, coordinates or a point.

    Parameters
    ----------
    spec : str or VA
        An emotion of the vocabulary (``"calm"``), a mood tag of the mapping with or without the
        ``mood/theme---`` prefix (``"relaxing"``), coordinates ``"valence,arousal"``
        (``"0.4,-0.6"``), or a point (taken as it is, checked to lie in [-1, 1]).
    vocabulary, mapping : optional
        Default: the built-in vocabulary and tag mapping.

    Returns
    -------
    (VA, str)
        The point and a label: the emotion name, the tag, or the formatted coordinates.

    Raises
    ------
    UnknownEmotionError
        Unknown names (the message lists the closest known ones), coordinates outside
        [-1, 1], or a theme tag (which carries no emotion).
    """
    if isinstance(spec, VA):
        va = check_va(spec, "point")
        return va, format_va(va)
    vocabulary = load_vocabulary() if vocabulary is None else vocabulary
    mapping = load_tag_mapping(vocabulary=vocabulary) if mapping is None else mapping
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownEmotionError(
            "empty emotional state: give an emotion name, a mood tag or 'valence,arousal'"
        )
    match = _COORDINATES.match(spec)
    if match:
        va = check_va(VA(float(match.group(1)), float(match.group(2))), f"coordinates {spec.strip()!r}")
        return va, format_va(va)
    name = spec.strip().lower()
    by_name = emotion_by_name(vocabulary)
    if name in by_name:
        return by_name[name].va, name
    entry = mapping.get(name)
    if entry is not None:
        if entry.emotion is None:
            raise UnknownEmotionError(
                f"{entry.tag!r} is a theme tag (an occasion or medium), not an emotion; "
                f"choose a mood such as {', '.join(e.tag for e in mapping.mood_entries[:4])}"
            )
        return entry.emotion.va, entry.tag
    known = sorted(set(by_name) | {e.tag for e in mapping.mood_entries})
    close = difflib.get_close_matches(strip_tag(name), known, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'musicmed-stream emotions' for the list"
    raise UnknownEmotionError(
        f"unknown emotion {spec.strip()!r}: {hint} (or give coordinates 'valence,arousal' in [-1, 1])"
    )


__all__ = ["TAG_PREFIX", "check_va", "format_va", "resolve_state"]
