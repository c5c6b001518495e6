"""CLAP score: cosine similarity x 100 between a clip and its text prompt (transformers ``ClapModel``).

CLAP sees 10-s windows of 48 kHz mono audio (its feature extractor's ``max_length_s`` and
``sampling_rate``). A clip is cut into full windows that cover it: consecutive windows from the
start, and the last one ending at the clip's end (it may overlap the one before), so no window is
padded and none is randomly cropped (the extractor crops longer input at random). A clip shorter
than one window is passed whole and padded by the extractor. The clip's score is the mean over its
windows. Models load from the local disk only, never from the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicmed_stream.errors import ConfigError, WeightsNotFoundError

DEFAULT_MODEL = "laion/larger_clap_music"


def window_starts(n_frames: int, window: int) -> list[int]:
    """Start frames of full windows covering ``[0, n_frames)``; one window at 0 if the clip is shorter."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, window))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def _to_mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


@dataclass(frozen=True)
class ClapScore:
    """A clip's CLAP score and the score of each window."""

    score: float
    window_scores: tuple[float, ...]


class ClapScorer:
    """Embeds audio and text with a local CLAP model.

    Parameters
    ----------
    model : str or path
        A folder holding a saved ``ClapModel`` + ``ClapProcessor``, or a Hub id already in the
        local Hugging Face cache (e.g. ``laion/larger_clap_music``).
    device : str
        torch device.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, device: str = "cpu") -> None:
        import torch
        from transformers import ClapModel, ClapProcessor

        self.name = str(model)
        self.device = device
        try:
            self.processor = ClapProcessor.from_pretrained(str(model), local_files_only=True)
            self.model = ClapModel.from_pretrained(str(model), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise WeightsNotFoundError(
                f"CLAP model {model!r} is not on this machine ({type(exc).__name__}); get it with "
                f"`huggingface-cli download {DEFAULT_MODEL}` and pass --clap {DEFAULT_MODEL}, or pass "
                "--clap with the folder of a saved ClapModel"
            ) from exc
        try:
            self.model = self.model.to(device)
        except (AssertionError, RuntimeError, ValueError) as exc:  # torch asserts when CUDA is absent
            raise ConfigError(f"cannot use torch device {device!r} for CLAP: {exc}") from exc
        extractor = self.processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.window = int(extractor.nb_max_samples)
        self.parameters = int(sum(p.numel() for p in self.model.parameters()))
        self._torch = torch

    def _resample(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        mono = _to_mono(audio)
        if sample_rate == self.sample_rate:
            return mono
        import soxr

        return soxr.resample(mono, sample_rate, self.sample_rate).astype(np.float32)

    def windows(self, audio: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """The clip's CLAP windows at the model's sample rate (see :func:`window_starts`)."""
        mono = self._resample(audio, sample_rate)
        return [mono[s : s + self.window] for s in window_starts(mono.size, self.window)]

    def audio_embeddings(self, windows: Sequence[np.ndarray], batch: int = 8) -> np.ndarray:
        """Unit-norm embeddings ``(n_windows, dim)``."""
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(windows), batch):
                inputs = self.processor.feature_extractor(
                    [np.asarray(w, dtype=np.float32) for w in windows[i : i + batch]],
                    sampling_rate=self.sample_rate,
                    return_tensors="pt",
                ).to(self.device)
                out.append(self.model.get_audio_features(**inputs).pooler_output.float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings ``(n_texts, dim)``."""
        with self._torch.inference_mode():
            inputs = self.processor.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
            return self.model.get_text_features(**inputs).pooler_output.float().cpu().numpy()

    def clip_embedding_windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embeddings of every window of one clip."""
        return self.audio_embeddings(self.windows(audio, sample_rate))

    def score(self, audio: np.ndarray, sample_rate: int, prompt: str) -> ClapScore:
        """CLAP score of one clip against its prompt: mean over windows of 100 x cosine similarity."""
        return clap_score(self.clip_embedding_windows(audio, sample_rate), self.text_embeddings([prompt])[0])


def clap_score(window_embeddings: np.ndarray, text_embedding: np.ndarray) -> ClapScore:
    """Score of one clip from its window embeddings ``(n, dim)`` and its prompt's embedding ``(dim,)``."""
    per_window = 100.0 * cosine(window_embeddings, text_embedding[None, :])[:, 0]
    return ClapScore(float(per_window.mean()), tuple(float(s) for s in per_window))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix between the rows of ``a`` and ``b``."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T
