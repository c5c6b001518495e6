"""Streaming decode: EnCodec audio for a clip while MusicGen is still generating its tokens.

MusicGen predicts its codebooks with a delay pattern: codebook ``k`` of audio frame ``t`` is
sampled at step ``t + k + 1`` (column 0 holds the start token). A frame is therefore complete
``K - 1`` steps after its first codebook. :class:`CodeStreamer` collects the token columns, and
every ``chunk_frames`` complete frames decodes a window of codes with EnCodec: the window reaches
``context_frames`` back (the decoder's LSTM and convolutions need left context to converge to
what a whole-clip decode gives) and its last ``overlap_frames`` are held back and crossfaded
with the next window, because the non-causal convolutions change the right edge once later
frames exist.

``MusicgenForConditionalGeneration.generate`` in transformers 5.x hands its ``streamer`` only the
initial ids, never the sampled steps, so :class:`StepWatcher` (a ``StoppingCriteria``, called
once per step with all ids so far) feeds the streamer and also stops generation when a cancel
event is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


def undelay(columns: torch.Tensor, num_codebooks: int) -> torch.Tensor:
    """Codes ``(K, frames)`` of the complete frames in delayed token columns ``(K, steps)``.

    Column 0 is the start token; codebook ``k`` of frame ``t`` sits in column ``1 + t + k``.
    """
    frames = columns.shape[1] - num_codebooks
    if frames <= 0:
        return columns.new_zeros((num_codebooks, 0))
    return torch.stack([columns[k, 1 + k : 1 + k + frames] for k in range(num_codebooks)])


class CodeStreamer(BaseStreamer):
    """Receive token columns of one sequence, emit decoded audio chunks through ``on_audio``.

    Parameters
    ----------
    decode : callable
        ``codes (K, frames) long tensor -> float32 numpy (samples,)``, the EnCodec decoder.
    num_codebooks, hop_length : int
        The codec's codebooks and samples per frame.
    skip_frames : int
        Leading frames not to emit (the audio prompt's frames).
    chunk_frames : int
        Emit every this many new frames (each chunk but the last is exactly this long).
    on_audio : callable
        Called with each chunk (float32, mono), in the generating thread.
    context_frames, overlap_frames : int
        Left context of each decoding window, and frames crossfaded between windows.
    """

    def __init__(
        self,
        decode: Callable[[torch.Tensor], np.ndarray],
        num_codebooks: int,
        hop_length: int,
        skip_frames: int,
        chunk_frames: int,
        on_audio: Callable[[np.ndarray], None],
        context_frames: int = 50,
        overlap_frames: int = 5,
    ) -> None:
        self.decode = decode
        self.num_codebooks = num_codebooks
        self.hop = hop_length
        self.skip = skip_frames
        self.chunk = max(1, chunk_frames)
        self.on_audio = on_audio
        self.context = context_frames
        self.overlap = overlap_frames
        self.columns: list[torch.Tensor] = []
        self.emitted = skip_frames  # frames whose audio has been sent (or skipped)
        self.held = np.zeros(0, dtype=np.float32)  # decoded overlap not yet sent
        self.chunks_sent = 0

    def put(self, value: torch.Tensor) -> None:
        """Take ``(K, steps)`` token columns (the first call may hold several)."""
        self.columns.append(value.reshape(self.num_codebooks, -1).cpu())
        ready = sum(c.shape[1] for c in self.columns) - self.num_codebooks
        # Whole chunks only: the chunks are then the same whatever the columns' arrival cadence
        # (one step at a time, every 25 steps, or a batch's window).
        while ready - self.emitted >= self.chunk + self.overlap:
            self._emit(self.emitted + self.chunk, final=False)

    def end(self) -> None:
        """Decode and send whatever is left, up to the last complete frame."""
        ready = sum(c.shape[1] for c in self.columns) - self.num_codebooks
        if ready > self.emitted:
            self._emit(ready, final=True)
        elif self.held.size:
            self.on_audio(self.held)
            self.held = np.zeros(0, dtype=np.float32)

    def _emit(self, upto: int, final: bool) -> None:
        codes = undelay(torch.cat(self.columns, dim=1), self.num_codebooks)
        start = max(0, self.emitted - self.context)
        stop = codes.shape[1] if final else min(codes.shape[1], upto + self.overlap)
        audio = self.decode(codes[:, start:stop])
        first = (self.emitted - start) * self.hop
        new = audio[first : (upto - start) * self.hop if not final else None]
        if self.held.size:
            fade = min(self.held.size, new.size)
            ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
            new = new.copy()
            new[:fade] = self.held[:fade] * (1.0 - ramp) + new[:fade] * ramp
        if not final:
            # Hold back the overlap: the next window decodes it again with right context.
            tail = audio[(upto - start) * self.hop : (upto - start + self.overlap) * self.hop]
            self.held = np.ascontiguousarray(tail, dtype=np.float32)
        else:
            self.held = np.zeros(0, dtype=np.float32)
        self.emitted = upto
        if new.size:
            self.chunks_sent += 1
            self.on_audio(np.ascontiguousarray(new, dtype=np.float32))


class StepWatcher(StoppingCriteria):
    """Called by ``generate`` once per step: feeds a streamer the new columns; stops on cancel."""

    def __init__(
        self,
        streamer: BaseStreamer | None = None,
        cancel: threading.Event | None = None,
        rows: int | None = None,
    ) -> None:
        self.streamer = streamer
        self.cancel = cancel
        self.rows = rows
        self.seen = 0
        self.cancelled = False

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if self.streamer is not None:
            # The first call also hands over the initial ids (start token and audio prompt).
            ids = input_ids if self.rows is None else input_ids[: self.rows]
            self.streamer.put(ids[:, self.seen :])
            self.seen = ids.shape[1]
        stop = self.cancel is not None and self.cancel.is_set()
        self.cancelled = self.cancelled or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
