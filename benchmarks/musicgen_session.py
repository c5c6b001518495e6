"""Speed of the MusicGen engine: a 15-minute session's generation time, real-time factor, first audio.

Models are built from configs with the published architectures of facebook/musicgen-small,
-medium and -large (random weights: the speed of a transformer does not depend on its weights,
and nothing can be downloaded on the benchmark machine) and run through ``MusicgenEngine``
exactly as a session does: the first clip from text, every later clip continuing the previous
clip's tail (``--tail-seconds`` of audio prompt).

A session of ``--minutes`` is the planner's clip grid (``planner.clip_grid``: clips overlapped by
the chain's quarter-clip crossfade, so that the session plays for ``--minutes``). With
``--clips N`` smaller than that, N clips are generated (the first from text, the others with an
audio prompt) and the session time is extrapolated as ``first + (clips - 1) *
mean(continuations)``; the output says so.

Usage::

    python benchmarks/musicgen_session.py --size small --clips 3
    python benchmarks/musicgen_session.py --size small large --impl hf static --clips 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# Published decoder sizes (hidden, layers, heads, ffn); all use T5-base text and 32-kHz EnCodec.
SIZES = {
    "small": (1024, 24, 16, 4096),
    "medium": (1536, 48, 24, 6144),
    "large": (2048, 48, 32, 8192),
}


def build_loaded(size: str, device: str, dtype: str):
    """A random-weight MusicGen of the published ``size``, wrapped like a loaded checkpoint."""
    import torch
    from tiny_musicgen import build_tiny_tokenizer
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
    )

    from musicmed_stream.engines.musicgen.loading import LoadedMusicgen, resolve_device, resolve_dtype

    hidden, layers, heads, ffn = SIZES[size]
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(
        sampling_rate=32000,
        target_bandwidths=[2.2],
        codebook_size=2048,
        upsampling_ratios=[8, 5, 4, 4],
        hidden_size=128,
        num_filters=64,
        num_lstm_layers=2,
        use_causal_conv=False,
        use_conv_shortcut=False,
        normalize=False,
        chunk_length_s=None,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        ffn_dim=ffn,
        num_codebooks=4,
        max_position_embeddings=2048,
    )
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    torch.manual_seed(0)
    with torch.device(device):
        net = MusicgenForConditionalGeneration(
            MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
        )
    net.eval()
    for part in (net.text_encoder, net.decoder):
        part.to(torch_dtype)
    if getattr(net, "enc_to_dec_proj", None) is not None:
        net.enc_to_dec_proj.to(torch_dtype)
    gen = net.generation_config
    gen.decoder_start_token_id = gen.pad_token_id = gen.bos_token_id = 2048
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
        tokenizer=build_tiny_tokenizer(),
    )
    params = sum(p.numel() for p in net.decoder.parameters())
    return LoadedMusicgen(net, processor, device, torch_dtype, Path(f"<random {size}>")), params


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_one(size: str, impl: str, args: argparse.Namespace) -> dict:
    import torch

    from musicmed_stream.engines.base import Continuation
    from musicmed_stream.engines.musicgen.engine import MusicgenEngine
    from musicmed_stream.planner import PlanSettings, clip_grid
    from musicmed_stream.planner.types import Segment

    t0 = time.perf_counter()
    loaded, params = build_loaded(size, args.device, args.dtype)
    build_s = time.perf_counter() - t0
    # "static-eager": static decoding without the CUDA graph, to show what the graph buys;
    # "static-compile": the step compiled by torch.compile (Inductor) before the graph capture.
    options = {
        "decode_impl": impl.split("-")[0],
        "cuda_graph": impl != "static-eager",
        "compile": impl == "static-compile",
    }
    engine = MusicgenEngine(
        loaded=loaded,
        tail_seconds=args.tail_seconds,
        stream_chunk_seconds=args.chunk_seconds,
        guidance_scale=args.guidance_scale,
        **options,
    )
    grid = clip_grid(PlanSettings(minutes=args.minutes, clip_seconds=args.clip_seconds))
    session_clips = len(grid)
    played_s = grid[-1][0] + grid[-1][1]  # the crossfaded session's length
    clips = min(args.clips, session_clips)

    def seg(i: int) -> Segment:
        return Segment(
            i, i * args.clip_seconds, args.clip_seconds, 0.5, -0.3, "calmness", "calm", "piano", "ambient"
        )

    # Warm-up (kernels, graphs, compilation, allocator; with and without audio prompt), not counted.
    short = Segment(0, 0.0, 2.0, 0.5, -0.3, "calmness", "calm", "piano", "ambient")
    engine.generate(short, None, seed=0)
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (int(args.tail_seconds * 32000), 1))
    engine.generate(short, Continuation(noise.astype(np.float32), 32000), seed=0)
    sync(loaded.device)

    times, previous = [], None
    first_audio = []
    for i in range(clips):
        start = time.perf_counter()
        clip, first = None, None
        for item in engine.stream(seg(i), previous, seed=i):
            if first is None and isinstance(item, np.ndarray):
                first = time.perf_counter() - start
            clip = item
        first_audio.append(first)
        sync(loaded.device)
        times.append(time.perf_counter() - start)
        previous = Continuation(clip.audio[-int(args.tail_seconds * clip.sample_rate) :], clip.sample_rate)
        print(
            f"  {size}/{impl} clip {i}: {times[-1]:.2f} s for {args.clip_seconds:g} s "
            f"(prompt {clip.info['prompt_audio_seconds']:.1f} s), first audio {first_audio[i]:.2f} s",
            flush=True,
        )
    conts = times[1:] or times
    session_s = times[0] + (session_clips - 1) * statistics.mean(conts)
    peak = torch.cuda.max_memory_allocated() / 2**30 if loaded.device.startswith("cuda") else float("nan")
    row = {
        "size": size,
        "impl": impl,
        "decoder_params_M": round(params / 1e6),
        "device": loaded.device,
        "gpu": torch.cuda.get_device_name() if loaded.device.startswith("cuda") else "cpu",
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "clip_seconds": args.clip_seconds,
        "clips_run": clips,
        "session_clips": session_clips,
        "extrapolated": clips < session_clips,
        "first_clip_s": round(times[0], 2),
        "continuation_clip_s": round(statistics.mean(conts), 2),
        "session_minutes": round(session_s / 60, 2),
        "played_minutes": round(played_s / 60, 2),
        "realtime_factor": round(played_s / session_s, 2),
        "first_audio_s": round(min(first_audio), 3),
        "ms_per_step": round(1000 * statistics.mean(conts) / (args.clip_seconds * 50), 2),
        "peak_gpu_GiB": round(peak, 2),
        "build_s": round(build_s, 1),
    }
    del engine, loaded
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", nargs="+", default=["small"], choices=sorted(SIZES))
    parser.add_argument("--impl", nargs="+", default=["hf"], help="decoding implementations to compare")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--clips", type=int, default=3, help="clips actually generated (rest extrapolated)")
    parser.add_argument("--tail-seconds", type=float, default=10.0)
    parser.add_argument("--chunk-seconds", type=float, default=1.0)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    rows = []
    for size in args.size:
        for impl in args.impl:
            rows.append(run_one(size, impl, args))
            print(json.dumps(rows[-1]), flush=True)
    cols = [
        "size",
        "impl",
        "dtype",
        "first_clip_s",
        "continuation_clip_s",
        "session_minutes",
        "realtime_factor",
    ]
    cols += ["first_audio_s", "ms_per_step", "peak_gpu_GiB"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
