"""Offline use of the chain: the same objects the daemon streams through, run to the end."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from musicmed_stream.chain.block import BlockProcessor
from musicmed_stream.chain.clip import prepare_clip
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.chain.crossfade import Crossfader
from musicmed_stream.errors import AudioError


class SessionMixer:
    """Crossfader + block processor, fed with prepared clips, emitting processed blocks.

    This is the whole output path of the chain in one object: :meth:`push` a prepared clip and
    get back the processed blocks that became final; :meth:`close` drains the rest. The output
    has exactly as many frames as the crossfaded input (the limiter latency is compensated).
    """

    def __init__(
        self, sample_rate: int, channels: int, config: ChainConfig, block_frames: int = 16384
    ) -> None:
        if block_frames < 1:
            raise AudioError(f"block_frames must be >= 1, got {block_frames}")
        self.block_frames = block_frames
        self.crossfader = Crossfader(channels, config.crossfade_fraction)
        self.processor = BlockProcessor(sample_rate, channels, config)
        self._skip = self.processor.latency  # leading frames of limiter delay

    def push(self, prepared: np.ndarray) -> list[np.ndarray]:
        """Add a prepared clip; returns the processed blocks now final."""
        self.crossfader.push(prepared)
        return self._drain(final=False)

    def close(self) -> list[np.ndarray]:
        """No more clips: returns every remaining processed frame."""
        self.crossfader.close()
        blocks = self._drain(final=True)
        blocks.append(self._strip(self.processor.flush()))
        return [b for b in blocks if b.shape[0]]

    def _drain(self, final: bool) -> list[np.ndarray]:
        blocks = []
        while self.crossfader.available >= self.block_frames or (final and self.crossfader.available):
            blocks.append(self._strip(self.processor.process(self.crossfader.pull(self.block_frames))))
        return [b for b in blocks if b.shape[0]]

    def _strip(self, block: np.ndarray) -> np.ndarray:
        if self._skip:
            cut = min(self._skip, block.shape[0])
            self._skip -= cut
            block = block[cut:]
        return block


def process_session(
    clips: Iterable[np.ndarray],
    sample_rate: int,
    config: ChainConfig | None = None,
    block_frames: int = 16384,
    workers: int = 2,
) -> np.ndarray:
    """Run the whole chain over a sequence of raw clips: prepare, crossfade, high-pass, limit.

    Parameters
    ----------
    clips : iterable of np.ndarray
        Raw clips, ``(frames, channels)``, all with the same channel count, at ``sample_rate``.
    sample_rate : int
    config : ChainConfig, optional
    block_frames : int
        Block size of the streaming stage (the output does not depend on it; offline, large blocks
        spend less time in per-block overhead: 16384 frames cost about 30 % less than 4096).
    workers : int
        Threads preparing clips while the streaming stage runs (numpy/scipy release the GIL in
        the heavy parts); the output does not depend on it.

    Returns
    -------
    np.ndarray
        float32 ``(frames, channels)``: the finished session.
    """
    config = config or ChainConfig()
    mixer: SessionMixer | None = None
    blocks: list[np.ndarray] = []
    channels = 1
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for prepared in pool.map(lambda clip: prepare_clip(clip, sample_rate, config), clips):
            if mixer is None:
                channels = prepared.shape[1]
                mixer = SessionMixer(sample_rate, channels, config, block_frames)
            blocks += mixer.push(prepared)
    if mixer is None:
        return np.zeros((0, channels), dtype=np.float32)
    blocks += mixer.close()
    if not blocks:
        return np.zeros((0, channels), dtype=np.float32)
    return np.concatenate(blocks, axis=0)
