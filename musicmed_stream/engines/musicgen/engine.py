"""The ``musicgen`` engine: MusicGen (transformers) clips along the plan, each continuing the last.

The first clip is generated from its text prompt alone. Every later clip is conditioned on the
silence-trimmed tail of the previous clip as an audio prompt (plus its own text prompt), the
method's way of keeping one piece of music flowing across clips; transformers returns prompt +
continuation, and the clip is the continuation only.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from musicmed_stream.engines.base import Clip, Continuation, clip_seed
from musicmed_stream.engines.musicgen.chunks import ClipChunks
from musicmed_stream.engines.musicgen.loading import (
    DEFAULT_MODEL,
    AdapterInfo,
    LoadedMusicgen,
    load_musicgen,
)
from musicmed_stream.errors import AudioError, ConfigError, GenerationCancelled
from musicmed_stream.planner.types import Segment

log = logging.getLogger(__name__)


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"musicgen {name} must be a {'non-negative' if allow_zero else 'positive'} number")
    return value


def to_model_rate(tail: np.ndarray, sample_rate: int, model_rate: int) -> np.ndarray:
    """Mono float32 audio at ``model_rate`` from ``(frames, channels)`` audio at ``sample_rate``."""
    from musicmed_stream.chain import as_frames, resample

    mono = as_frames(tail).mean(axis=1, keepdims=True)  # AudioError on NaN/inf
    return np.ascontiguousarray(resample(mono, sample_rate, model_rate)[:, 0], dtype=np.float32)


def candidate_seed(seed: int, index: int) -> int:
    """Seed of best-of-N candidate ``index``: the clip's own seed for the first, derived ones after it."""
    return seed if index == 0 else clip_seed(seed, index)


@dataclass(frozen=True)
class PreparedClip:
    """A clip's checked request and model inputs, before any token is generated.

    Attributes
    ----------
    segment : Segment
    wanted : int
        Samples of the finished clip.
    frames : int
        Codec frames to generate (``wanted`` rounded up to whole frames).
    prompt_samples, prompt_frames : int
        Length of the audio prompt (the previous clip's tail), in samples and in codec frames.
    inputs : dict
        The processor's tensors (``input_ids``, ``attention_mask``, and ``input_values`` /
        ``padding_mask`` with an audio prompt), on the model's device.
    """

    segment: Segment
    wanted: int
    frames: int
    prompt_samples: int
    prompt_frames: int
    inputs: dict[str, Any]


class _AnyEvent:
    """Set when any of its events is set (the caller's cancel, or the stream being closed)."""

    def __init__(self, *events: threading.Event | None) -> None:
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class MusicgenEngine:
    """MusicGen clips for planned segments (``Engine`` protocol).

    Parameters
    ----------
    model : str
        Hugging Face model id (looked up in the local cache) or a folder saved with ``save_pretrained``.
    adapter : str, optional
        Folder of a PEFT LoRA adapter from ``musicmed-stream finetune``.
    device : str
        ``auto`` (CUDA, then MPS, then CPU), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
    dtype : str
        ``auto`` (bfloat16/float16 on a GPU, float32 on CPU), ``float32``, ``bfloat16``, ``float16``.
    top_k, temperature, guidance_scale :
        Sampling: top-k, softmax temperature, classifier-free guidance scale (1 disables it).
    tail_seconds : float
        At most this much of the previous clip's tail conditions the next clip (0: text only).
    stream_chunk_seconds : float
        Audio per streamed chunk.
    allow_download : bool
        Fetch a model id missing from the cache (otherwise never touch the network).
    require_gpu : bool
        Refuse to run on the CPU.
    merge_adapter : bool
        Merge the LoRA weights into the decoder (faster; equal to rounding).
    decode_impl : str
        ``static`` (static KV cache + CUDA graph per token, see ``fast.py``), ``hf``
        (``transformers`` ``generate``), or ``auto``: ``static`` on CUDA, ``hf`` elsewhere.
    cuda_graph : bool
        With ``static`` on CUDA, replay each token step as a CUDA graph.
    compile : bool
        With ``static``, compile the token step with ``torch.compile`` first (slow first clip).
    best_of : int
        Generate this many candidates per clip as one batch and keep the one whose estimated
        emotion fits the segment best (``evaluation.selection``); 1 generates one clip.
        Candidates are scored on the whole clip, so with ``best_of > 1`` ``stream`` yields the
        chosen clip as one chunk.
    scorer : str
        Best-of-N scoring backend: ``auto`` (CLAP zero-shot when ``clap_model`` loads, the
        acoustic estimate otherwise), ``features`` or ``clap``.
    clap_model : str
        CLAP model folder or cached Hub id for the ``clap`` / ``auto`` scorer.
    loaded : LoadedMusicgen, optional
        An already loaded model to share (then ``model``/``adapter``/``device``/``dtype`` are ignored).
    """

    name = "musicgen"
    channels = 1

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        adapter: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        top_k: int = 250,
        guidance_scale: float = 3.0,
        temperature: float = 1.0,
        tail_seconds: float = 10.0,
        stream_chunk_seconds: float = 2.0,
        allow_download: bool = False,
        require_gpu: bool = False,
        merge_adapter: bool = True,
        decode_impl: str = "auto",
        cuda_graph: bool = True,
        compile: bool = False,
        best_of: int = 1,
        scorer: str = "auto",
        clap_model: str = "",
        loaded: LoadedMusicgen | None = None,
    ) -> None:
        if int(top_k) < 0:
            raise ConfigError("musicgen top_k must be >= 0 (0 disables top-k filtering)")
        self.top_k = int(top_k)
        self.guidance_scale = _positive("guidance_scale", guidance_scale)
        self.temperature = _positive("temperature", temperature)
        self.tail_seconds = _positive("tail_seconds", tail_seconds, allow_zero=True)
        self.stream_chunk_seconds = _positive("stream_chunk_seconds", stream_chunk_seconds)
        self._mg = loaded or load_musicgen(
            model,
            adapter or None,  # "" (config files) means no adapter
            device=device,
            dtype=dtype,
            allow_download=allow_download,
            merge_adapter=merge_adapter,
        )
        if require_gpu and self._mg.device == "cpu":
            raise ConfigError("musicgen require_gpu is set but no GPU was found")
        if decode_impl not in ("auto", "static", "hf"):
            raise ConfigError(f"musicgen decode_impl {decode_impl!r}: choose auto, static or hf")
        if decode_impl == "auto":
            decode_impl = "static" if self._mg.device.startswith("cuda") else "hf"
        self.decode_impl = decode_impl
        self.cuda_graph = bool(cuda_graph)
        self.compile = bool(compile)
        self._static: Any = None
        self.model_name = model
        self.sample_rate = self._mg.sample_rate
        self.hop_length = int(self._mg.model.config.audio_encoder.hop_length)
        self._lock = threading.Lock()  # one generation at a time on the shared model
        if int(best_of) < 1:
            raise ConfigError("musicgen best_of must be at least 1")
        if scorer not in ("auto", "features", "clap"):
            raise ConfigError(f"musicgen scorer {scorer!r}: choose auto, features or clap")
        self.best_of = int(best_of)
        self.scorer_backend = scorer
        self.clap_model = clap_model
        self._scorer: Any = None
        self._schedulers: dict[int, Any] = {}  # best-of batch decoders, by candidate count

    @property
    def loaded(self) -> LoadedMusicgen:
        return self._mg

    @property
    def adapter_info(self) -> AdapterInfo | None:
        """The adapter's training facts (tag mapping, label statistics), for the planner."""
        return self._mg.adapter

    @property
    def tag_mapping(self) -> dict[str, Any]:
        """Mood tag -> emotion/valence/arousal the adapter was trained with (empty without adapter)."""
        return dict(self._mg.adapter.tag_mapping) if self._mg.adapter else {}

    @property
    def max_clip_seconds(self) -> float:
        """Longest clip one generation can give (MusicGen's position window, minus the codebook delay)."""
        return (self._mg.max_positions - self._mg.num_codebooks - 1) / self._mg.frame_rate

    # -- Engine protocol -------------------------------------------------------------------

    def generate(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Clip:
        """Generate the clip for ``segment`` (continuing ``previous``); see the class docstring."""
        return self._run(segment, previous, seed, cancel, on_audio=None)

    def stream(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Iterator[np.ndarray | Clip]:
        """Yield audio chunks ``(frames, 1)`` while the clip is generated, then the :class:`Clip`.

        The final clip is the same as :meth:`generate` gives; the chunks are decoded in overlapping
        windows and match it closely but not bit for bit (see ``streaming.CodeStreamer``).
        Closing the iterator early stops the generation.
        """
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        closed = threading.Event()
        stop = _AnyEvent(cancel, closed)

        def work() -> None:
            try:
                clip = self._run(segment, previous, seed, stop, on_audio=lambda a: items.put(("audio", a)))
                items.put(("clip", clip))
            except BaseException as exc:  # handed to the consumer thread, re-raised there
                items.put(("error", exc))

        worker = threading.Thread(target=work, name=f"musicgen-clip-{segment.index}", daemon=True)
        worker.start()
        chunks = ClipChunks(self._clip_samples(segment))
        try:
            while True:
                kind, item = items.get()
                if kind == "error":
                    raise item
                if kind == "clip":
                    yield from chunks.finish(item)
                    return
                chunk = chunks.take(item)
                if chunk is not None:
                    yield chunk
        finally:
            closed.set()
            worker.join()

    # -- internals ---------------------------------------------------------------------------

    def _clip_samples(self, segment: Segment) -> int:
        return round(segment.duration_s * self.sample_rate)

    def prompt_audio(self, previous: Continuation | None, clip_frames: int) -> np.ndarray:
        """The audio prompt for a clip: the previous tail, mono at the model rate, capped and frame-aligned.

        At most ``tail_seconds`` and at most what fits beside ``clip_frames`` in the position window;
        the most recent audio is kept and the start trimmed to a whole number of codec frames, so
        the prompt's codes and the continuation meet exactly at a frame boundary.
        """
        if previous is None or previous.tail.size == 0 or self.tail_seconds == 0:
            return np.zeros(0, dtype=np.float32)
        audio = to_model_rate(previous.tail, previous.sample_rate, self.sample_rate)
        room = self._mg.max_positions - clip_frames - self._mg.num_codebooks - 1
        frames = min(int(self.tail_seconds * self._mg.frame_rate), room, audio.size // self.hop_length)
        if frames <= 0:
            return np.zeros(0, dtype=np.float32)
        return np.ascontiguousarray(audio[audio.size - frames * self.hop_length :])

    def prepare(self, segment: Segment, previous: Continuation | None) -> PreparedClip:
        """Check ``segment`` and build the model inputs of its clip (text and audio prompt).

        Raises
        ------
        ConfigError
            A non-positive duration, or a clip longer than MusicGen's position window.
        """
        if segment.duration_s <= 0:
            raise ConfigError(f"segment {segment.index}: duration must be positive")
        wanted = self._clip_samples(segment)
        frames = math.ceil(wanted / self.hop_length)
        if frames + self._mg.num_codebooks + 1 > self._mg.max_positions:
            raise ConfigError(
                f"segment {segment.index}: {segment.duration_s:g} s exceeds MusicGen's window of "
                f"{self.max_clip_seconds:.1f} s per clip; plan shorter clips (clip_seconds)"
            )
        prompt = self.prompt_audio(previous, frames)
        prompt_frames = prompt.size // self.hop_length
        proc_kwargs: dict[str, Any] = {"text": [segment.prompt], "padding": True, "return_tensors": "pt"}
        if prompt_frames:
            proc_kwargs |= {"audio": [prompt], "sampling_rate": self.sample_rate}
        inputs = {k: v.to(self._mg.device) for k, v in self._mg.processor(**proc_kwargs).items()}
        return PreparedClip(segment, wanted, frames, prompt.size, prompt_frames, inputs)

    def condition(self, prepared: PreparedClip) -> tuple[Any, Any, Any]:
        """Projected text states ``(1, s, d)``, their mask, and the audio prompt codes ``(K, p)`` or None."""
        net, inputs = self._mg.model, prepared.inputs
        hidden = net.text_encoder(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).last_hidden_state
        if getattr(net, "enc_to_dec_proj", None) is not None:
            hidden = net.enc_to_dec_proj(hidden.to(net.enc_to_dec_proj.weight.dtype))
        codes = None
        if prepared.prompt_frames:
            encoded = net.audio_encoder.encode(
                input_values=inputs["input_values"].float(), padding_mask=inputs.get("padding_mask")
            )
            codes = encoded.audio_codes[0, 0]
        return hidden, inputs["attention_mask"], codes

    def finish(self, prepared: PreparedClip, audio: np.ndarray, seed: int, **info: Any) -> Clip:
        """The :class:`Clip` from the decoded audio of prompt + continuation (the prompt is cut off)."""
        segment = prepared.segment
        out = audio[prepared.prompt_frames * self.hop_length :]
        if out.size < prepared.wanted:
            raise AudioError(
                f"segment {segment.index}: MusicGen gave {out.size} samples, wanted {prepared.wanted}"
            )
        clip_audio = np.ascontiguousarray(out[: prepared.wanted], dtype=np.float32).reshape(-1, 1)
        mg = self._mg
        info = {
            "prompt_audio_seconds": prepared.prompt_samples / self.sample_rate,
            "prompt_frames": prepared.prompt_frames,
            "text_prompt": segment.prompt,
            "generated_frames": prepared.frames,
            "seed": seed,
            "model": self.model_name,
            "adapter": str(mg.adapter.path) if mg.adapter else None,
            "device": mg.device,
            "dtype": str(mg.dtype).removeprefix("torch."),
            "decode_impl": self.decode_impl,
            "top_k": self.top_k,
            "temperature": self.temperature,
            "guidance_scale": self.guidance_scale,
        } | info
        return Clip(audio=clip_audio, sample_rate=self.sample_rate, segment_index=segment.index, info=info)

    @property
    def sampling(self) -> Any:
        """The sampling settings as the static decoders take them."""
        from musicmed_stream.engines.musicgen.fast import SamplingConfig

        return SamplingConfig(self.top_k, self.temperature, self.guidance_scale)

    def _run(
        self,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        cancel: threading.Event | _AnyEvent | None,
        on_audio: Callable[[np.ndarray], None] | None,
    ) -> Clip:
        if self.best_of > 1:
            return self._run_best_of(segment, previous, seed, cancel)
        import torch

        from musicmed_stream.engines.musicgen.streaming import CodeStreamer

        prepared = self.prepare(segment, previous)
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled(f"segment {segment.index} cancelled before it started")
        mg = self._mg
        streamer = None
        if on_audio is not None:
            streamer = CodeStreamer(
                decode=self._decode_codes,
                num_codebooks=mg.num_codebooks,
                hop_length=self.hop_length,
                skip_frames=prepared.prompt_frames,
                chunk_frames=self.stream_chunk_frames,
                on_audio=lambda a: on_audio(a.reshape(-1, 1)),
            )
        devices = [torch.device(mg.device).index or 0] if mg.device.startswith("cuda") else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            if self.decode_impl == "static":
                audio, cancelled = self._generate_static(prepared, seed, cancel, streamer)
            else:
                audio, cancelled = self._generate_hf(prepared.inputs, prepared.frames, cancel, streamer)
            if cancelled:
                raise GenerationCancelled(f"segment {segment.index} cancelled")
            if streamer is not None:
                streamer.end()
        extra = {"stream_chunks": streamer.chunks_sent} if streamer is not None else {}
        return self.finish(prepared, audio, seed, **extra)

    def generate_candidates(
        self,
        segment: Segment,
        previous: Continuation | None,
        *,
        seed: int,
        n: int,
        cancel: threading.Event | None = None,
    ) -> list[Clip]:
        """``n`` clips for ``segment`` decoded as one batch, candidate ``i`` with :func:`candidate_seed`.

        The batch has exactly ``n`` slots, so the same ``(seed, n)`` gives the same candidates.
        """
        from musicmed_stream.engines.musicgen.batched import ClipScheduler

        if n < 1:
            raise ConfigError("musicgen best_of must be at least 1")
        with self._lock:
            scheduler = self._schedulers.get(n)
            if scheduler is None:
                scheduler = self._schedulers[n] = ClipScheduler(self, slots=n, policy="wave")
            jobs = [
                scheduler.submit(segment, previous, candidate_seed(seed, i), cancel=cancel) for i in range(n)
            ]
            scheduler.drain()
        return [job.result() for job in jobs]

    def _run_best_of(
        self,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        cancel: threading.Event | _AnyEvent | None,
    ) -> Clip:
        from musicmed_stream.evaluation.selection import pick_best

        clips = self.generate_candidates(segment, previous, seed=seed, n=self.best_of, cancel=cancel)
        return pick_best(clips, segment, self.scorer)

    @property
    def scorer(self) -> Any:
        """The emotion-fit scorer of best-of-N (built on first use: CLAP loads a model)."""
        if self._scorer is None:
            from musicmed_stream.evaluation.selection import EmotionFitScorer

            self._scorer = EmotionFitScorer(self.scorer_backend, clap_model=self.clap_model or None)
        return self._scorer

    @property
    def stream_chunk_frames(self) -> int:
        """Codec frames per streamed chunk."""
        return max(1, round(self.stream_chunk_seconds * self._mg.frame_rate))

    def _generate_hf(
        self, inputs: dict[str, Any], frames: int, cancel: Any, streamer: Any
    ) -> tuple[np.ndarray, bool]:
        """``transformers`` ``generate``: audio of prompt + continuation, and whether cancelled."""
        from transformers import StoppingCriteriaList

        from musicmed_stream.engines.musicgen.streaming import StepWatcher

        watcher = StepWatcher(streamer=streamer, cancel=cancel)
        try:
            audio = self._mg.model.generate(
                **inputs,
                do_sample=True,
                top_k=self.top_k,
                temperature=self.temperature,
                guidance_scale=self.guidance_scale,
                max_new_tokens=frames + self._mg.num_codebooks - 1,
                stopping_criteria=StoppingCriteriaList([watcher]),
            )
        except RuntimeError:
            # Stopped early, transformers cannot undo the delay pattern of a partial sequence.
            if watcher.cancelled:
                return np.zeros(0, dtype=np.float32), True
            raise
        return audio[0, 0].float().cpu().numpy(), watcher.cancelled

    def _generate_static(
        self, prepared: PreparedClip, seed: int, cancel: Any, streamer: Any
    ) -> tuple[np.ndarray, bool]:
        """Static-cache decoding (``fast.py``): audio of prompt + continuation, and whether cancelled."""
        from musicmed_stream.engines.musicgen.fast import StaticMusicgenDecoder
        from musicmed_stream.engines.musicgen.streaming import undelay

        if self._static is None:
            graph = self.cuda_graph and self._mg.device.startswith("cuda")
            self._static = StaticMusicgenDecoder(
                self._mg.model, self.sampling, use_cuda_graph=graph, compile_step=self.compile
            )
        hidden, mask, codes = self.condition(prepared)
        columns, cancelled = self._static.generate(
            hidden,
            mask,
            codes,
            prepared.frames,
            seed,
            cancel=cancel,
            on_columns=streamer.put if streamer is not None else None,
            # Hand columns over at least once per streamed chunk (and check cancel as often).
            columns_every=min(25, streamer.chunk) if streamer is not None else 25,
        )
        if cancelled:
            return np.zeros(0, dtype=np.float32), True
        return self._decode_codes(undelay(columns, self._mg.num_codebooks)), False

    def _decode_codes(self, codes: Any) -> np.ndarray:
        """EnCodec audio (float32, mono) of codes ``(K, frames)``."""
        import torch

        with torch.inference_mode():
            values = self._mg.model.audio_encoder.decode(
                codes[None, None].to(self._mg.device), audio_scales=[None]
            ).audio_values
        return values[0, 0].float().cpu().numpy()
