"""Batched MusicGen decoding: many clips in one static-cache batch, each clip on its own slot.

A GPU decoding MusicGen is memory-bound: each token step reads every weight once, whether it
computes one clip or eight. :class:`BatchedMusicgenDecoder` holds a fixed number of *slots*; each
slot is one clip with its own text conditioning, audio prompt, position, delay pattern and
Gumbel noise drawn from the clip's own seed. One step advances every slot by one token.

**Same seed, same clip, whatever it is batched with.** The step always runs at the full, fixed
batch shape (idle slots compute and are ignored), and every operation in it is row-wise
(linear layers, layer norms, attention per row, top-k per row). At a fixed shape a row's result
then depends on its own values only, not on its neighbours nor on its position in the batch
(checked on MKL: at a *different* batch size the same row can differ in the last bits, which
is why the shape never changes). Prefill, text encoding and EnCodec run per clip.

:class:`ClipScheduler` feeds the decoder: ``continuous`` admits a waiting clip into any free slot
between steps (continuous batching); ``wave`` admits clips only when every slot is free, the
static batching that Ray Serve's ``@serve.batch`` gives. It streams decoded chunks per clip
(``streaming.CodeStreamer``) and finishes each clip with the engine's own whole-clip decode.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from musicmed_stream.engines.base import Clip, Continuation
from musicmed_stream.engines.musicgen.chunks import ClipChunks
from musicmed_stream.engines.musicgen.fast import SamplingConfig, attend, gumbel_noise
from musicmed_stream.engines.musicgen.streaming import CodeStreamer, undelay
from musicmed_stream.errors import ConfigError, GenerationCancelled
from musicmed_stream.planner.types import Segment

if TYPE_CHECKING:
    from musicmed_stream.engines.musicgen.engine import MusicgenEngine, PreparedClip

log = logging.getLogger(__name__)

POLICIES = ("continuous", "wave")


class BatchedMusicgenDecoder:
    """Token generation for up to ``slots`` clips at once on static buffers.

    Rows are slot-major: slot ``b`` owns rows ``b * G .. b * G + G - 1`` (``G = 2`` with
    classifier-free guidance: conditional then unconditional row), so a slot's rows are one
    contiguous view of every buffer.

    Parameters
    ----------
    net : MusicgenForConditionalGeneration
    sampling : SamplingConfig
    slots : int
        Clips decoded together (the batch's fixed capacity).
    max_columns : int, optional
        Token columns a slot can hold (start token + prompt + clip + codebook delay); the model's
        position window by default. Smaller saves cache memory (``slots`` x layers x columns).
    max_text_tokens : int
        Text prompts are padded (or cut) to this many tokens.
    use_cuda_graph : bool, optional
        Capture the step as a CUDA graph (default: on CUDA devices).
    compile_step : bool
        ``torch.compile`` the step before capturing it.
    """

    def __init__(
        self,
        net: Any,
        sampling: SamplingConfig,
        slots: int,
        max_columns: int | None = None,
        max_text_tokens: int = 64,
        use_cuda_graph: bool | None = None,
        compile_step: bool = False,
    ) -> None:
        if slots < 1:
            raise ConfigError("a batch needs at least one slot")
        self.net = net
        self.sampling = sampling
        causal_lm = net.decoder
        base = getattr(causal_lm, "get_base_model", lambda: causal_lm)()
        self.decoder = base.model.decoder
        self.lm_heads = base.lm_heads
        cfg = net.config.decoder
        self.K, self.V = int(cfg.num_codebooks), int(cfg.vocab_size)
        self.H = int(cfg.num_attention_heads)
        self.D = int(cfg.hidden_size) // self.H
        self.T = min(int(cfg.max_position_embeddings), max_columns or int(cfg.max_position_embeddings))
        self.S = max_text_tokens
        self.slots = slots
        self.G = 2 if sampling.guidance_scale > 1 else 1
        self.R = slots * self.G
        self.topk = sampling.top_k if 0 < sampling.top_k < self.V else self.V
        self.device = next(self.decoder.parameters()).device
        self.dtype = next(self.decoder.parameters()).dtype
        self.use_graph = self.device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
        dev, dt, n_layers = self.device, self.dtype, len(self.decoder.layers)
        shape = (self.R, self.H, self.T, self.D)
        self.k_cache = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(n_layers)]
        self.v_cache = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(n_layers)]
        xshape = (self.R, self.H, self.S, self.D)
        self.cross_k = [torch.zeros(xshape, device=dev, dtype=dt) for _ in range(n_layers)]
        self.cross_v = [torch.zeros(xshape, device=dev, dtype=dt) for _ in range(n_layers)]
        self.cross_mask = torch.zeros((self.R, 1, 1, self.S), device=dev, dtype=torch.bool)
        self.cross_mask[:, 0, 0, 0] = True  # idle rows: one key keeps their softmax defined
        self.positions = torch.arange(self.T, device=dev)
        self.row_ids = torch.arange(self.R, device=dev)
        self.slot_ids = torch.arange(slots, device=dev)
        self.pos = torch.zeros(slots, device=dev, dtype=torch.long)
        self.limit = torch.zeros(slots, device=dev, dtype=torch.long)  # columns of the clip; 0: idle
        self.tok = torch.zeros((self.R, self.K), device=dev, dtype=torch.long)
        # Column T is scratch: finished and idle slots write their (ignored) tokens there.
        self.seq = torch.zeros((slots, self.K, self.T + 1), device=dev, dtype=torch.long)
        self.pattern = torch.full((slots, self.K, self.T + 1), -1, device=dev, dtype=torch.long)
        self.noise = torch.zeros((slots, self.T, self.K, self.topk), device=dev, dtype=torch.float32)
        self.graph: torch.cuda.CUDAGraph | None = None
        self._step_fn = torch.compile(self._step, dynamic=False) if compile_step else self._step

    # -- the model's computation ------------------------------------------------------------

    def _attend(self, attn: Any, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor):
        return attend(attn, x, k, v, mask, self.H, self.D)

    def _layers(
        self,
        tokens: torch.Tensor,
        position_ids: torch.Tensor,
        rows: slice,
        self_mask: torch.Tensor,
        write: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """Logits ``(r, K, t, V)`` of tokens ``(r, K, t)``; ``write`` stores a layer's keys/values
        in the cache and returns the cache views to attend to."""
        dec = self.decoder
        r, _, t = tokens.shape
        h = sum(dec.embed_tokens[k](tokens[:, k]) for k in range(self.K))
        h = h + dec.embed_positions.weights[position_ids].to(h.dtype)
        for i, layer in enumerate(dec.layers):
            x = layer.self_attn_layer_norm(h)
            sa = layer.self_attn
            k = sa.k_proj(x).view(r, t, self.H, self.D).transpose(1, 2)
            v = sa.v_proj(x).view(r, t, self.H, self.D).transpose(1, 2)
            keys, values = write(i, k, v)
            h = h + self._attend(sa, x, keys, values, self_mask)
            x = layer.encoder_attn_layer_norm(h)
            cross = (self.cross_k[i][rows], self.cross_v[i][rows], self.cross_mask[rows])
            h = h + self._attend(layer.encoder_attn, x, *cross)
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        h = dec.layer_norm(h)
        return torch.stack([head(h) for head in self.lm_heads], dim=1)

    def _step(self) -> None:
        """One token for every slot, each at its own position; finished and idle slots stand still."""
        row_pos = self.pos.repeat_interleave(self.G)  # (R,)

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.k_cache[i][self.row_ids, :, row_pos] = k[:, :, 0]
            self.v_cache[i][self.row_ids, :, row_pos] = v[:, :, 0]
            return self.k_cache[i], self.v_cache[i]

        mask = (self.positions[None, :] <= row_pos[:, None])[:, None, None, :]
        logits = self._layers(self.tok[:, :, None], row_pos[:, None], slice(None), mask, write)
        logits = logits[:, :, 0].float().view(self.slots, self.G, self.K, self.V)
        if self.G == 2:
            logits = logits[:, 1] + self.sampling.guidance_scale * (logits[:, 0] - logits[:, 1])
        else:
            logits = logits[:, 0]
        logits = logits / self.sampling.temperature
        gumbel = self.noise[self.slot_ids, self.pos]  # (slots, K, topk)
        if self.topk < self.V:
            values, indices = torch.topk(logits, self.topk, dim=-1)
            choice = indices.gather(-1, (values + gumbel).argmax(-1, keepdim=True))[..., 0]
        else:
            choice = (logits + gumbel).argmax(-1)
        live = self.pos + 1 < self.limit
        nxt = torch.where(live, self.pos + 1, self.T)
        forced = self.pattern[self.slot_ids, :, nxt]  # (slots, K)
        token = torch.where(forced == -1, choice, forced)
        self.seq[self.slot_ids, :, nxt] = token
        self.tok.copy_(token.repeat_interleave(self.G, dim=0))
        self.pos.add_(live.long())

    # -- per slot -----------------------------------------------------------------------------

    def columns_needed(self, prompt_frames: int, frames: int) -> int:
        """Token columns of a clip: start token, prompt, clip, and the codebook delay."""
        return 1 + prompt_frames + frames + self.K - 1

    def admit(
        self,
        slot: int,
        encoder_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        prompt_codes: torch.Tensor | None,
        frames: int,
        seed: int,
    ) -> tuple[int, int]:
        """Put a clip on ``slot`` and prefill its known columns; returns ``(first, total)`` columns."""
        pad = int(self.net.generation_config.decoder_start_token_id)
        s = 0 if prompt_codes is None else prompt_codes.shape[1]
        total = self.columns_needed(s, frames)
        if total > self.T:
            raise ConfigError(f"{total} token columns exceed the batch's {self.T} positions")
        start = torch.full((self.K, 1), pad, dtype=torch.long, device=self.device)
        ids = start if prompt_codes is None else torch.cat([start, prompt_codes.to(self.device)], dim=1)
        ids, pattern = self.net.decoder.build_delay_pattern_mask(ids, pad, max_length=total)
        first = ids.shape[1]
        rows = slice(slot * self.G, (slot + 1) * self.G)
        self.pattern[slot].fill_(-1)
        self.pattern[slot, :, :total] = pattern
        self.seq[slot].zero_()
        self.seq[slot, :, :first] = ids
        self.noise[slot].copy_(gumbel_noise(seed, self.T, self.K, self.topk))
        self._set_text(rows, encoder_hidden, text_mask)
        if first > 1:  # prefill all known columns but the last, for this slot's rows only
            known = ids[None, :, : first - 1].expand(self.G, -1, -1)
            positions = self.positions[: first - 1]

            def write(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                self.k_cache[i][rows].index_copy_(2, positions, k)
                self.v_cache[i][rows].index_copy_(2, positions, v)
                return self.k_cache[i][rows], self.v_cache[i][rows]

            causal = (self.positions[None, :] <= positions[:, None])[None, None]
            self._layers(known, positions[None, :].expand(self.G, -1), rows, causal, write)
        self.tok[rows].copy_(ids[None, :, first - 1].expand(self.G, -1))
        self.pos[slot] = first - 1
        self.limit[slot] = total
        return first, total

    def release(self, slot: int) -> None:
        """Free ``slot`` (its rows keep computing at the full batch shape, and are ignored)."""
        self.limit[slot] = 0
        self.pos[slot] = 0

    def columns(self, slot: int, start: int, stop: int) -> torch.Tensor:
        """Token columns ``[start, stop)`` of ``slot`` on the CPU."""
        return self.seq[slot, :, start:stop].cpu()

    def step(self, n: int = 1) -> None:
        """Advance every slot by ``n`` tokens."""
        if self.use_graph and self.graph is None:
            self._capture()
        for _ in range(n):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step_fn()

    def _set_text(self, rows: slice, encoder_hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Cross-attention keys/values of a slot's rows for its text states ``(1, s, d)``."""
        s = min(encoder_hidden.shape[1], self.S)
        hidden = torch.zeros((self.G, self.S, encoder_hidden.shape[-1]), device=self.device, dtype=self.dtype)
        hidden[0, :s] = encoder_hidden[0, :s].to(self.dtype) * mask[0, :s, None].to(self.dtype)
        cross_mask = self.cross_mask[rows]
        cross_mask.zero_()
        cross_mask[0, 0, 0, :s] = mask[0, :s].bool()
        if self.G == 2:
            # The unconditional row attends to zeros, as transformers' guidance does.
            cross_mask[1, 0, 0, 0] = True
        for i, layer in enumerate(self.decoder.layers):
            ea = layer.encoder_attn
            self.cross_k[i][rows] = ea.k_proj(hidden).view(self.G, self.S, self.H, self.D).transpose(1, 2)
            self.cross_v[i][rows] = ea.v_proj(hidden).view(self.G, self.S, self.H, self.D).transpose(1, 2)

    def _capture(self) -> None:
        """Capture one step as a CUDA graph (warm-up on a side stream, state restored after)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        state = (self.pos, self.tok, self.seq)
        saved = [b.clone() for b in state]
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step_fn()
        torch.cuda.current_stream().wait_stream(stream)
        for buf, old in zip(state, saved, strict=True):
            buf.copy_(old)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step_fn()
        for buf, old in zip(state, saved, strict=True):
            buf.copy_(old)


# -- scheduling ------------------------------------------------------------------------------


@dataclass
class ClipJob:
    """One clip request in a :class:`ClipScheduler`; its results arrive through ``sink``.

    ``sink`` receives ``("audio", chunk)`` items while the clip is decoded (streaming jobs only),
    then ``("clip", Clip)`` or ``("error", exception)``. Without a sink, items queue up for
    :meth:`items` / :meth:`result`.
    """

    prepared: PreparedClip
    seed: int
    stream: bool = False
    cancel: threading.Event | Any | None = None
    sink: Callable[[tuple[str, Any]], None] | None = None
    slot: int = -1
    first: int = 0
    total: int = 0
    done: int = 0
    sent_columns: int = 0
    streamer: CodeStreamer | None = None
    chunks: ClipChunks | None = None
    finished: bool = False
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _result: Clip | None = None

    def emit(self, kind: str, value: Any) -> None:
        if kind in ("clip", "error"):
            self.finished = True
        (self.sink or self._queue.put)((kind, value))

    def items(self) -> Iterator[np.ndarray | Clip]:
        """Chunks, then the clip (blocking; raises the job's error). Once, and only without a sink."""
        while True:
            kind, value = self._queue.get()
            if kind == "error":
                raise value
            yield value
            if kind == "clip":
                return

    def result(self) -> Clip:
        """The finished clip (blocking; the same clip on every call)."""
        if self._result is None:
            for item in self.items():
                if isinstance(item, Clip):
                    self._result = item
        return self._result

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


class ClipScheduler:
    """Runs clips of one :class:`MusicgenEngine` through a :class:`BatchedMusicgenDecoder`.

    Parameters
    ----------
    engine : MusicgenEngine
        Supplies the model, the sampling settings, input preparation and the EnCodec decode.
    slots : int
        Clips decoded together.
    policy : str
        ``continuous``: a waiting clip joins in any free slot between steps. ``wave``: clips are
        admitted only when all slots are free (static batching, as ``@serve.batch`` gives).
    columns_every : int
        At most this many steps between two looks at the clips (streamed columns, finished
        clips, cancellations, admissions).
    max_columns : int, optional
        Token columns per slot (default: the model's window; smaller saves cache memory).
    """

    def __init__(
        self,
        engine: MusicgenEngine,
        slots: int,
        policy: str = "continuous",
        columns_every: int = 25,
        max_columns: int | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"batching policy {policy!r}: choose {' or '.join(POLICIES)}")
        self.engine = engine
        self.policy = policy
        self.columns_every = max(1, columns_every)
        mg = engine.loaded
        graph = engine.cuda_graph and mg.device.startswith("cuda")
        self.decoder = BatchedMusicgenDecoder(
            mg.model,
            engine.sampling,
            slots,
            max_columns=max_columns,
            use_cuda_graph=graph,
            compile_step=engine.compile,
        )
        self.slots: list[ClipJob | None] = [None] * slots
        self.pending: collections.deque[ClipJob] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self.steps = 0  # token steps run (for the benchmark and the log)

    # -- submitting ---------------------------------------------------------------------------

    def prepare(
        self,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        *,
        stream: bool = False,
        cancel: threading.Event | Any | None = None,
        sink: Callable[[tuple[str, Any]], None] | None = None,
    ) -> ClipJob:
        """A job for one clip, checked against the batch's size (``ConfigError`` if it cannot fit)."""
        prepared = self.engine.prepare(segment, previous)
        needed = self.decoder.columns_needed(prepared.prompt_frames, prepared.frames)
        if needed > self.decoder.T:
            raise ConfigError(
                f"segment {segment.index}: {segment.duration_s:g} s with a "
                f"{prepared.prompt_samples / self.engine.sample_rate:.1f}-s prompt needs {needed} token "
                f"columns; this batch holds {self.decoder.T}"
            )
        return ClipJob(prepared, seed, stream=stream, cancel=cancel, sink=sink)

    def submit(
        self,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        *,
        stream: bool = False,
        cancel: threading.Event | Any | None = None,
        sink: Callable[[tuple[str, Any]], None] | None = None,
    ) -> ClipJob:
        """Queue one clip; see :meth:`prepare` and :class:`ClipJob`."""
        job = self.prepare(segment, previous, seed, stream=stream, cancel=cancel, sink=sink)
        self.enqueue([job])
        return job

    def enqueue(self, jobs: list[ClipJob]) -> None:
        """Queue prepared jobs, in order (a wave is admitted together while slots are free)."""
        with self._cond:
            self.pending.extend(jobs)
            self._cond.notify_all()

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the batch loop in a daemon thread."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="musicgen-batch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the loop thread; clips still queued or running get a ``GenerationCancelled`` error."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for job in [*self.pending, *(j for j in self.slots if j is not None)]:
            job.emit("error", GenerationCancelled("the generation service is shutting down"))
        self.pending.clear()
        self.slots = [None] * len(self.slots)

    def drain(self) -> None:
        """Run the loop in the calling thread until no clip is queued or running."""
        while self.tick():
            pass

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self.pending and not any(self.slots):
                    self._cond.wait()
                if self._stop:
                    return
            try:
                self.tick()
            except Exception:  # a bug in one batch must not take the service down silently
                log.exception("batch step failed; failing the clips in it")
                for slot, job in enumerate(self.slots):
                    if job is not None:
                        job.emit("error", RuntimeError("the batch decoding this clip failed"))
                        self._free(slot)

    @property
    def active(self) -> int:
        return sum(job is not None for job in self.slots)

    def tick(self) -> bool:
        """Admit, step, hand over columns and finish clips once; False when there is nothing to do."""
        with torch.inference_mode():
            self._drop_cancelled()
            self._admit()
            running = [job for job in self.slots if job is not None]
            if not running:
                return bool(self.pending)
            n = min(self.columns_every, *(job.total - job.done for job in running))
            streaming = [job.streamer.chunk for job in running if job.streamer is not None]
            n = max(1, min(n, *streaming)) if streaming else max(1, n)
            self.decoder.step(n)
            self.steps += n
            for job in running:
                job.done = min(job.total, job.done + n)
                if job.streamer is not None:
                    self._stream(job)
                if job.done >= job.total:
                    self._finish(job)
        return True

    def _drop_cancelled(self) -> None:
        with self._cond:
            for job in [j for j in self.pending if j.cancelled]:
                self.pending.remove(job)
                job.emit("error", GenerationCancelled(f"segment {job.prepared.segment.index} cancelled"))
        for slot, job in enumerate(self.slots):
            if job is not None and job.cancelled:
                self._free(slot)
                job.emit("error", GenerationCancelled(f"segment {job.prepared.segment.index} cancelled"))

    def _admit(self) -> None:
        if self.policy == "wave" and any(self.slots):
            return
        for slot in range(len(self.slots)):
            if self.slots[slot] is not None:
                continue
            with self._cond:
                if not self.pending:
                    return
                job = self.pending.popleft()
            try:
                self._start(slot, job)
            except Exception as exc:  # this clip's inputs; the others go on
                self._free(slot)
                job.emit("error", exc)

    def _start(self, slot: int, job: ClipJob) -> None:
        engine = self.engine
        hidden, mask, codes = engine.condition(job.prepared)
        job.first, job.total = self.decoder.admit(slot, hidden, mask, codes, job.prepared.frames, job.seed)
        job.slot, job.done, job.sent_columns = slot, job.first, 0
        self.slots[slot] = job
        if job.stream:
            job.chunks = ClipChunks(job.prepared.wanted)

            def on_audio(audio: np.ndarray, job: ClipJob = job) -> None:
                chunk = job.chunks.take(audio)
                if chunk is not None:
                    job.emit("audio", chunk)

            job.streamer = CodeStreamer(
                decode=engine._decode_codes,
                num_codebooks=engine.loaded.num_codebooks,
                hop_length=engine.hop_length,
                skip_frames=job.prepared.prompt_frames,
                chunk_frames=engine.stream_chunk_frames,
                on_audio=on_audio,
            )

    def _stream(self, job: ClipJob) -> None:
        job.streamer.put(self.decoder.columns(job.slot, job.sent_columns, job.done))
        job.sent_columns = job.done

    def _finish(self, job: ClipJob) -> None:
        engine = self.engine
        columns = self.decoder.columns(job.slot, 0, job.total)
        slots = self.decoder.slots
        self._free(job.slot)
        try:
            if job.streamer is not None:
                job.streamer.end()
            audio = engine._decode_codes(undelay(columns, engine.loaded.num_codebooks))
            clip = engine.finish(
                job.prepared, audio, job.seed, decode_impl="batched", batch_slots=slots, policy=self.policy
            )
            if job.stream and job.chunks is not None:
                for item in job.chunks.finish(clip):
                    job.emit("clip" if isinstance(item, Clip) else "audio", item)
            else:
                job.emit("clip", clip)
        except Exception as exc:
            job.emit("error", exc)

    def _free(self, slot: int) -> None:
        self.decoder.release(slot)
        self.slots[slot] = None
