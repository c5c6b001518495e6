"""The interface every engine implements: one clip for one planned segment.

An engine turns a :class:`~musicmed_stream.planner.Segment` into audio. Every clip after the
first continues the previous one: the engine receives a :class:`Continuation` that carries the
silence-trimmed tail of the previous clip (what MusicGen is conditioned on) and the engine's own
JSON-serializable ``state`` (what the built-in composer needs for key, tempo and motif). Both are
saved next to each finished clip, so an interrupted render resumes with identical results.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from musicmed_stream.planner.types import Segment


@dataclass(frozen=True)
class Continuation:
    """What a clip continues from.

    Attributes
    ----------
    tail : np.ndarray
        Silence-trimmed end of the previous clip, float32, shape ``(frames, channels)``, at
        ``sample_rate``. May be empty.
    sample_rate : int
        Sample rate of ``tail``.
    state : dict
        The ``state`` the engine returned with the previous clip (JSON-serializable).
    """

    tail: np.ndarray
    sample_rate: int
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Clip:
    """One generated clip.

    Attributes
    ----------
    audio : np.ndarray
        float32, shape ``(frames, channels)``, nominally within [-1, 1].
    sample_rate : int
    segment_index : int
    state : dict
        Engine state for the next clip's :class:`Continuation` (JSON-serializable).
    notes : list of dict
        Optional symbolic content (the built-in engine's notes, for the session MIDI file):
        ``{"start": s, "end": s, "pitch": midi, "velocity": 1-127, "program": gm, "channel": c}``,
        times relative to the clip start.
    info : dict
        Free-form facts about the generation (e.g. ``{"prompt_audio_seconds": 10.0}``).
    """

    audio: np.ndarray
    sample_rate: int
    segment_index: int
    state: dict[str, Any] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate


@runtime_checkable
class Engine(Protocol):
    """A clip generator. Implementations: ``builtin`` (CPU composer/synth), ``musicgen``."""

    name: str
    sample_rate: int
    channels: int

    def generate(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Clip:
        """Generate the clip for ``segment``; raise ``GenerationCancelled`` if ``cancel`` is set."""
        ...


def stream_clip(
    engine: Engine,
    segment: Segment,
    previous: Continuation | None,
    *,
    seed: int,
    cancel: threading.Event | None = None,
) -> Iterator[np.ndarray | Clip]:
    """Yield a clip's audio in chunks as it is generated, then the finished :class:`Clip`.

    Engines that decode incrementally provide ``stream(...)`` with this contract; for the
    others the whole clip arrives as one chunk.
    """
    stream = getattr(engine, "stream", None)
    if stream is not None:
        yield from stream(segment, previous, seed=seed, cancel=cancel)
        return
    clip = engine.generate(segment, previous, seed=seed, cancel=cancel)
    yield clip.audio
    yield clip


def clip_seed(session_seed: int, segment_index: int) -> int:
    """Seed for one clip: depends only on the session seed and the segment index (reproducible)."""
    return (session_seed * 1_000_003 + segment_index * 7919) % (2**31 - 1)
