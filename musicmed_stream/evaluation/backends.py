"""Mood-tag recognition backends: each scores clips against the mood tags, ``(n_clips, n_tags)``.

- ``features``: the acoustic valence/arousal estimate (:mod:`.features`), scored against each mood
  tag's circumplex point with a Gaussian of the distance, ``exp(-d^2 / (2 sigma^2))``.
- ``clap``: CLAP zero-shot, one text per tag (``"{tag} music"``); scores are the softmax over tags
  of 100 x cosine similarity (CLIP-style temperature), averaged over the clip's windows.
- ``essentia:PATH``: an MTG-Jamendo mood/theme classifier the user supplies, run with Essentia
  (``essentia-tensorflow``): PATH holds ``discogs-effnet-bs64-1.pb`` and
  ``mtg_jamendo_moodtheme-discogs-effnet-1.pb`` (+ its ``.json`` with the class names).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import ConfigError, WeightsNotFoundError
from musicmed_stream.evaluation.clap import ClapScorer, cosine

BACKENDS = ("features", "clap", "essentia")
FEATURES_SIGMA = 0.35
CLAP_TEMPLATE = "{tag} music"
EFFNET_FILE = "discogs-effnet-bs64-1.pb"
MOODTHEME_FILE = "mtg_jamendo_moodtheme-discogs-effnet-1.pb"


def parse_mer(spec: str) -> tuple[str, str | None]:
    """``"clap"`` -> ``("clap", None)``; ``"essentia:/models"`` -> ``("essentia", "/models")``."""
    name, _, path = spec.partition(":")
    if name not in BACKENDS:
        raise ConfigError(f"unknown --mer backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "essentia" and not path:
        raise ConfigError("--mer essentia needs the model folder: --mer essentia:PATH")
    return name, path or None


def features_tag_scores(
    points: Sequence[VA], tag_points: dict[str, VA], sigma: float = FEATURES_SIGMA
) -> np.ndarray:
    """Gaussian closeness of each estimated point to each tag's circumplex point."""
    p = np.array([[v.valence, v.arousal] for v in points])
    t = np.array([[v.valence, v.arousal] for v in tag_points.values()])
    d2 = ((p[:, None, :] - t[None, :, :]) ** 2).sum(axis=2)
    return np.exp(-d2 / (2.0 * sigma**2))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def clap_tag_scores(window_embeddings: Sequence[np.ndarray], tag_embeddings: np.ndarray) -> np.ndarray:
    """Zero-shot tag probabilities per clip from its window embeddings and one embedding per tag."""
    return np.stack(
        [softmax(100.0 * cosine(w, tag_embeddings), axis=1).mean(axis=0) for w in window_embeddings]
    )


def clap_text_embeddings(scorer: ClapScorer, tags: Sequence[str]) -> np.ndarray:
    return scorer.text_embeddings([CLAP_TEMPLATE.format(tag=t) for t in tags])


class EssentiaMoodTheme:
    """The MTG-Jamendo mood/theme classifier on Discogs-EffNet embeddings, run with Essentia."""

    sample_rate = 16000

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.embedding_graph = folder / EFFNET_FILE
        self.classifier_graph = folder / MOODTHEME_FILE
        missing = [p.name for p in (self.embedding_graph, self.classifier_graph) if not p.is_file()]
        if missing:
            raise WeightsNotFoundError(
                f"Essentia model files missing in {folder}: {', '.join(missing)}; download them from "
                "https://essentia.upf.edu/models/ (feature-extractors/discogs-effnet and "
                "classification-heads/mtg_jamendo_moodtheme)"
            )
        try:
            import essentia.standard as es
        except ImportError as exc:
            raise ConfigError(
                "--mer essentia needs the essentia-tensorflow library (pip install essentia-tensorflow); "
                "it is not installed"
            ) from exc
        meta = self.classifier_graph.with_suffix(".json")
        classes = json.loads(meta.read_text())["classes"] if meta.is_file() else None
        if not classes:
            raise WeightsNotFoundError(f"{meta} with the classifier's class names is missing")
        self.classes = [c.split("---")[-1] for c in classes]
        self._embed = es.TensorflowPredictEffnetDiscogs(
            graphFilename=str(self.embedding_graph), output="PartitionedCall:1"
        )
        self._classify = es.TensorflowPredict2D(
            graphFilename=str(self.classifier_graph), output="model/Sigmoid"
        )

    def tag_scores(self, audio: np.ndarray, sample_rate: int, tags: Sequence[str]) -> np.ndarray:
        """Mean activation over the clip of each of ``tags`` (0 for tags the classifier lacks)."""
        import soxr

        mono = np.asarray(audio, dtype=np.float32)
        mono = mono.mean(axis=1) if mono.ndim == 2 else mono
        mono = soxr.resample(mono, sample_rate, self.sample_rate).astype(np.float32)
        activations = np.asarray(self._classify(self._embed(mono))).mean(axis=0)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([activations[index[t]] if t in index else 0.0 for t in tags])
