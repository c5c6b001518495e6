"""Best-of-N: score candidate clips against their segment's planned emotion and keep the best.

Each candidate gets two fits in [0, 1], averaged into its ``score``:

- ``va_fit``: closeness of the clip's estimated valence/arousal to the segment's planned point,
  ``exp(-d^2 / (2 sigma^2))`` (``sigma`` as the ``features`` mood backend);
- ``tag_fit``: how well the clip matches the segment's mood tag.

With the ``features`` backend the estimate is the acoustic one (:func:`estimate_va`) and the tag
fit is the same Gaussian towards the tag's circumplex point. With ``clap`` the clip's zero-shot
probabilities over all mood tags (:func:`backends.clap_tag_scores`) give the tag fit (the mood
tag's probability) and the estimate (the probability-weighted mean of the tags' points).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from musicmed_stream.engines.base import Clip
from musicmed_stream.errors import ConfigError, MusicMedError
from musicmed_stream.evaluation import backends
from musicmed_stream.planner.types import VA, Segment

log = logging.getLogger(__name__)

SCORERS = ("auto", "features", "clap")


def closeness(a: VA, b: VA, sigma: float = backends.FEATURES_SIGMA) -> float:
    """Gaussian closeness of two circumplex points, 1 when equal."""
    return float(backends.features_tag_scores([a], {"b": b}, sigma)[0, 0])


class EmotionFitScorer:
    """Scores clips against a segment's planned valence/arousal and mood tag.

    Parameters
    ----------
    backend : str
        ``features`` (acoustic estimate), ``clap`` (CLAP zero-shot over the mood tags), or
        ``auto``: ``clap`` when ``clap_model`` loads, ``features`` otherwise.
    clap_model : str, optional
        CLAP model folder or a Hub id already in the local cache.
    device : str
        torch device of the CLAP model.
    """

    def __init__(self, backend: str = "auto", clap_model: str | None = None, device: str = "cpu") -> None:
        if backend not in SCORERS:
            raise ConfigError(f"best-of scorer {backend!r}: choose one of {', '.join(SCORERS)}")
        from musicmed_stream.evaluation.evaluate import mood_tag_points

        self.tag_points = mood_tag_points()
        self.tags = list(self.tag_points)
        self.clap: Any = None
        self._tag_embeddings: np.ndarray | None = None
        if backend in ("clap", "auto") and clap_model:
            from musicmed_stream.evaluation.clap import ClapScorer

            try:
                self.clap = ClapScorer(clap_model, device=device)
            except MusicMedError as exc:
                if backend == "clap":
                    raise
                log.info("best-of scorer: acoustic estimate, CLAP not available (%s)", exc)
        elif backend == "clap":
            raise ConfigError("the clap best-of scorer needs a CLAP model (clap_model)")
        self.backend = "clap" if self.clap is not None else "features"

    def score(self, audios: Sequence[np.ndarray], sample_rate: int, segment: Segment) -> list[dict[str, Any]]:
        """One ``{"score", "va_fit", "tag_fit", "estimated"}`` per clip, higher fitting better."""
        planned = segment.va
        tag_point = self.tag_points.get(segment.mood)
        if self.clap is not None:
            estimates, tag_fits = self._clap(audios, sample_rate, segment.mood)
        else:
            from musicmed_stream.evaluation.features import estimate_va, extract_features

            estimates = [estimate_va(extract_features(a, sample_rate)) for a in audios]
            tag_fits = [None if tag_point is None else closeness(e, tag_point) for e in estimates]
        out = []
        for estimate, tag_fit in zip(estimates, tag_fits, strict=True):
            va_fit = closeness(estimate, planned)
            fits = [va_fit] + ([] if tag_fit is None else [tag_fit])
            out.append(
                {
                    "score": float(np.mean(fits)),
                    "va_fit": va_fit,
                    "tag_fit": tag_fit,
                    "estimated": {"valence": estimate.valence, "arousal": estimate.arousal},
                }
            )
        return out

    def _clap(
        self, audios: Sequence[np.ndarray], sample_rate: int, mood: str
    ) -> tuple[list[VA], list[float | None]]:
        if self._tag_embeddings is None:
            self._tag_embeddings = backends.clap_text_embeddings(self.clap, self.tags)
        windows = [self.clap.clip_embedding_windows(a, sample_rate) for a in audios]
        probs = backends.clap_tag_scores(windows, self._tag_embeddings)  # (clips, tags)
        points = np.array([[p.valence, p.arousal] for p in self.tag_points.values()])
        expected = probs @ points / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
        index = self.tags.index(mood) if mood in self.tag_points else None
        estimates = [VA(float(v), float(a)) for v, a in expected]
        return estimates, [None if index is None else float(p[index]) for p in probs]


def best_index(scores: Sequence[dict[str, Any]]) -> int:
    """Index of the highest ``score`` (the earliest on ties)."""
    return int(np.argmax([s["score"] for s in scores]))


def pick_best(clips: Sequence[Clip], segment: Segment, scorer: EmotionFitScorer) -> Clip:
    """The candidate that fits ``segment`` best, its ``info["best_of"]`` holding every candidate's score."""
    scores = scorer.score([c.audio for c in clips], clips[0].sample_rate, segment)
    best = best_index(scores)
    summary = {
        "n": len(clips),
        "chosen": best,
        "backend": scorer.backend,
        "candidates": [s | {"seed": c.info.get("seed")} for s, c in zip(scores, clips, strict=True)],
    }
    chosen = clips[best]
    return dataclasses.replace(chosen, info=chosen.info | {"best_of": summary})
