"""Plan data types: a session is a tuple of segments along the iso path."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from musicmed_stream.bounds import (
    ClipCount,
    ClipSeconds,
    CrossfadeFraction,
    Minutes,
    PathShape,
    Seed,
    Temperature,
    UnitInterval,
)
from musicmed_stream.emotion.point import VA

# The clinical palette: MTG-Jamendo genre and instrument tags a clip is never given (see
# docs/planner.md). The one default of the planner, ``config.toml``'s ``[session]`` and the CLI flags.
DEFAULT_EXCLUDE_GENRES: tuple[str, ...] = ("metal", "hardrock", "hard", "punkrock", "grunge")
DEFAULT_EXCLUDE_INSTRUMENTS: tuple[str, ...] = ()


def tag_list(value: Any) -> Any:
    """An exclusion list as a tuple of stripped tag names: ``"a, b"`` or ``["a", "b"]`` ->
    ``("a", "b")``, ``""`` -> ``()``. Anything else is returned as is, for the validation to name."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        items = [item.strip() if isinstance(item, str) else item for item in value]
        return tuple(dict.fromkeys(item for item in items if item != ""))
    return value


@dataclass(frozen=True)
class Segment:
    """One clip of the session.

    ``start_s`` is where the clip begins in the played session: consecutive clips overlap by
    the audio chain's crossfade, so a clip starts before the previous one ends.
    """

    index: int
    start_s: float
    duration_s: float
    valence: float
    arousal: float
    emotion: str
    mood: str
    instrument: str
    genre: str

    @property
    def prompt(self) -> str:
        """The method's prompt format: ``"mood, emotion, instrument, genre"``."""
        return f"{self.mood}, {self.emotion}, {self.instrument}, {self.genre}"

    @property
    def va(self) -> VA:
        return VA(self.valence, self.arousal)


@dataclass(frozen=True)
class PlanSettings:
    """Inputs of the iso planner besides start and target.

    The field types carry the bounds (:mod:`musicmed_stream.bounds`) that the configuration and the
    control protocol share; :func:`~musicmed_stream.planner.validate_settings` checks them."""

    minutes: Minutes = 15.0
    clip_seconds: ClipSeconds = 30.0
    path: PathShape = "line"
    temperature: Temperature = 0.5
    match_clips: ClipCount = 2
    settle_clips: ClipCount = 2
    seed: Seed = 0
    arc_min_radius: UnitInterval = 0.5  # the ``arc`` path's smallest radius between its ends
    # Overlap of consecutive clips as a fraction of the shorter one: the audio chain's
    # ``ChainConfig.crossfade_fraction``, so that ``minutes`` is the length actually played.
    crossfade_fraction: CrossfadeFraction = 0.25
    # Tags never drawn; the rest of each mood's distribution is renormalised. Empty: none excluded.
    exclude_genres: tuple[str, ...] = DEFAULT_EXCLUDE_GENRES
    exclude_instruments: tuple[str, ...] = DEFAULT_EXCLUDE_INSTRUMENTS

    def __post_init__(self) -> None:
        # Lists (a plan read back from JSON) and "a,b" text become tuples: hashable and comparable.
        for name in ("exclude_genres", "exclude_instruments"):
            object.__setattr__(self, name, tag_list(getattr(self, name)))


def played_seconds(durations: list[float], crossfade_fraction: float) -> float:
    """Length of clips of ``durations`` played one after the other, each pair overlapped by
    ``crossfade_fraction`` of the shorter clip (the audio chain's crossfade rule)."""
    overlaps = sum(crossfade_fraction * min(a, b) for a, b in itertools.pairwise(durations))
    return float(sum(durations) - overlaps)


@dataclass(frozen=True)
class Plan:
    """A planned session: start and target states and the segments between them."""

    start: VA
    target: VA
    settings: PlanSettings
    segments: tuple[Segment, ...]
    start_label: str = ""
    target_label: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def duration_s(self) -> float:
        """Length of the played session: the clips minus their crossfade overlaps."""
        return played_seconds([s.duration_s for s in self.segments], self.settings.crossfade_fraction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": asdict(self.start),
            "target": asdict(self.target),
            "start_label": self.start_label,
            "target_label": self.target_label,
            "settings": asdict(self.settings),
            "segments": [asdict(s) | {"prompt": s.prompt} for s in self.segments],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        seg_fields = set(Segment.__dataclass_fields__)
        return cls(
            start=VA(**data["start"]),
            target=VA(**data["target"]),
            settings=PlanSettings(**data["settings"]),
            segments=tuple(
                Segment(**{k: v for k, v in s.items() if k in seg_fields}) for s in data["segments"]
            ),
            start_label=data.get("start_label", ""),
            target_label=data.get("target_label", ""),
            meta=data.get("meta", {}),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))
