"""Throughput of batched MusicGen serving: clips per minute and audio seconds per second.

The model is MusicGen-small's published architecture with random weights (built as in
``musicgen_session.py``: no download; speed does not depend on the weights), run through the
service's batch core (``ClipScheduler`` on a ``BatchedMusicgenDecoder``), in this process.

1. **Batch size** (``--batch 1 2 4 8 16``): B clips submitted together to a batch of B slots.
   Two baselines: ``serial``, the engine's own one-clip-at-a-time decoding
   (``MusicgenEngine.generate`` with ``--serial-impl``, by default what a daemon runs locally:
   ``hf`` on a CPU, ``static`` on a GPU), and batch 1 of the same batched decoder (the gain of
   batching alone). ``ratio`` = throughput / serial throughput, ``vs batch 1`` = throughput / batch 1.
2. **Concurrent clients** (``--clients 1 2 4 8``): N clients, each asking for ``--clips-per-client``
   clips back to back (each after the first continuing the previous clip's tail), starting at
   staggered times, against a batch of ``--slots`` slots with ``continuous`` batching and with
   ``wave`` batching (what ``@serve.batch`` gives: the next wave waits for the last to finish).

On a GPU (``--device cuda``) the step is captured as a CUDA graph per batch shape. On this 2-core
CPU use short clips (``--clip-seconds 1``); the output says what was used.

Usage::

    python benchmarks/serve_throughput.py --clip-seconds 1 --batch 1 2 4 8 16 --clients 1 2 4 8
    python benchmarks/serve_throughput.py --device cuda --clip-seconds 30 --tail-seconds 10 --slots 16
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from musicgen_session import build_loaded, sync  # noqa: E402


def segment(i: int, seconds: float):
    from musicmed_stream.planner.types import Segment

    moods = ("calm", "sad", "relaxing", "happy")
    return Segment(i, 0.0, seconds, 0.3, -0.4, "calmness", moods[i % 4], "piano", "ambient")


def tail(args: argparse.Namespace, seed: int):
    """A previous clip's tail of ``--tail-seconds`` (noise: its content does not change the speed)."""
    from musicmed_stream.engines.base import Continuation

    if args.tail_seconds <= 0:
        return None
    rng = np.random.default_rng(seed)
    audio = rng.uniform(-0.3, 0.3, (int(args.tail_seconds * 32000), 1)).astype(np.float32)
    return Continuation(audio, 32000)


def columns(engine, args: argparse.Namespace) -> int:
    """Token columns a slot needs for these clips (keeps the CPU's caches small)."""
    frames = int(np.ceil(args.clip_seconds * 50))
    return 1 + int(args.tail_seconds * 50) + frames + engine.loaded.num_codebooks - 1


def run_serial(engine, args: argparse.Namespace, n: int) -> float:
    """Seconds for ``n`` clips one after the other with the engine's own decoding."""
    engine.generate(segment(0, 0.2), tail(args, 0), seed=0)  # warm-up
    sync(engine.loaded.device)
    start = time.perf_counter()
    for i in range(n):
        engine.generate(segment(i, args.clip_seconds), tail(args, i), seed=i)
    sync(engine.loaded.device)
    return time.perf_counter() - start


def run_batch(engine, args: argparse.Namespace, slots: int, rounds: int) -> tuple[float, int]:
    """Seconds for ``rounds`` batches of ``slots`` clips submitted together; and the clips made."""
    from musicmed_stream.engines.musicgen.batched import ClipScheduler

    scheduler = ClipScheduler(engine, slots=slots, policy="wave", max_columns=columns(engine, args))
    warm = [
        scheduler.submit(segment(i, min(0.2, args.clip_seconds)), tail(args, i), seed=i) for i in range(slots)
    ]
    scheduler.drain()  # warm-up: graph capture, allocator
    [job.result() for job in warm]
    sync(engine.loaded.device)
    start = time.perf_counter()
    for r in range(rounds):
        jobs = [
            scheduler.submit(segment(i, args.clip_seconds), tail(args, i), seed=r * slots + i)
            for i in range(slots)
        ]
        scheduler.drain()
        [job.result() for job in jobs]
    sync(engine.loaded.device)
    return time.perf_counter() - start, rounds * slots


def run_clients(engine, args: argparse.Namespace, clients: int, policy: str) -> dict:
    """N client threads asking for clips back to back against one scheduler thread."""
    from musicmed_stream.engines.base import Continuation
    from musicmed_stream.engines.musicgen.batched import ClipScheduler

    scheduler = ClipScheduler(engine, slots=args.slots, policy=policy, max_columns=columns(engine, args))
    warm = [
        scheduler.submit(segment(i, min(0.2, args.clip_seconds)), tail(args, i), seed=i)
        for i in range(args.slots)
    ]
    scheduler.drain()
    [job.result() for job in warm]
    scheduler.start()
    latencies: list[float] = []
    lock = threading.Lock()
    rng = random.Random(clients)
    offsets = [rng.uniform(0, args.stagger_s) for _ in range(clients)]

    def client(c: int) -> None:
        time.sleep(offsets[c])
        previous = None
        for k in range(args.clips_per_client):
            t0 = time.perf_counter()
            clip = scheduler.submit(segment(k, args.clip_seconds), previous, seed=1000 * c + k).result()
            with lock:
                latencies.append(time.perf_counter() - t0)
            if args.tail_seconds > 0:
                keep = int(args.tail_seconds * clip.sample_rate)
                previous = Continuation(clip.audio[-keep:], clip.sample_rate)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    scheduler.stop()
    n = clients * args.clips_per_client
    return {
        "clients": clients,
        "policy": policy,
        "slots": args.slots,
        "clips": n,
        "wall_s": round(wall, 2),
        "clips_per_min": round(60 * n / wall, 2),
        "audio_s_per_s": round(n * args.clip_seconds / wall, 3),
        "mean_clip_latency_s": round(float(np.mean(latencies)), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", choices=("small", "medium", "large"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--clip-seconds", type=float, default=1.0)
    parser.add_argument("--tail-seconds", type=float, default=0.0, help="audio prompt of every clip")
    parser.add_argument("--batch", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=1, help="batches timed per batch size")
    parser.add_argument("--serial-clips", type=int, default=2)
    parser.add_argument("--serial-impl", default="auto", choices=("auto", "hf", "static"))
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--slots", type=int, default=8, help="batch slots for the client runs")
    parser.add_argument("--clips-per-client", type=int, default=2)
    parser.add_argument("--stagger-s", type=float, default=2.0, help="clients start within this window")
    parser.add_argument("--policies", nargs="*", default=["continuous", "wave"])
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from musicmed_stream.engines.musicgen.engine import MusicgenEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, params = build_loaded(args.size, args.device, args.dtype)
    options = {"guidance_scale": args.guidance_scale, "tail_seconds": max(args.tail_seconds, 0.0)}
    engine = MusicgenEngine(loaded=loaded, decode_impl="static", **options)
    serial = MusicgenEngine(loaded=loaded, decode_impl=args.serial_impl, **options)
    gpu = torch.cuda.get_device_name() if loaded.device.startswith("cuda") else "cpu"
    dtype = str(loaded.dtype).removeprefix("torch.")
    print(
        f"MusicGen-{args.size} ({params / 1e6:.0f} M decoder parameters, random weights) on "
        f"{loaded.device} ({gpu}), {dtype}, {torch.get_num_threads()} torch threads; clips of "
        f"{args.clip_seconds:g} s, audio prompt {args.tail_seconds:g} s, CFG {args.guidance_scale:g}, "
        "top-k 250",
        flush=True,
    )
    serial_s = run_serial(serial, args, args.serial_clips)
    serial_tp = args.serial_clips / serial_s
    print(f"serial ({serial.decode_impl}, one clip at a time): {serial_s / args.serial_clips:.2f} s per clip")

    rows: list[dict] = []
    b1_tp = None
    for b in args.batch:
        wall, clips = run_batch(engine, args, b, args.rounds)
        tp = clips / wall
        b1_tp = b1_tp or tp  # the first batch size listed (1 by default)
        rows.append(
            {
                "batch": b,
                "clips": clips,
                "wall_s": round(wall, 2),
                "clips_per_min": round(60 * tp, 2),
                "audio_s_per_s": round(tp * args.clip_seconds, 3),
                "ratio_vs_serial": round(tp / serial_tp, 2),
                "vs_first_batch": round(tp / b1_tp, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    impl, first = serial.decode_impl, args.batch[0]
    print(f"\n| batch | clips/min | audio s per s | batched / serial ({impl}) | vs batch {first} |")
    print("|---|---|---|---|---|")
    print(f"| serial | {60 * serial_tp:.2f} | {serial_tp * args.clip_seconds:.3f} | 1.00 | |")
    for r in rows:
        print(
            f"| {r['batch']} | {r['clips_per_min']} | {r['audio_s_per_s']} | {r['ratio_vs_serial']} | "
            f"{r['vs_first_batch']} |"
        )

    client_rows = []
    for policy in args.policies:
        for n in args.clients:
            client_rows.append(run_clients(engine, args, n, policy))
            print(json.dumps(client_rows[-1]), flush=True)
    if client_rows:
        print("\n| clients | batching | clips/min | audio s per s | mean clip latency s |")
        print("|---|---|---|---|---|")
        for r in client_rows:
            print(
                f"| {r['clients']} | {r['policy']} | {r['clips_per_min']} | {r['audio_s_per_s']} | "
                f"{r['mean_clip_latency_s']} |"
            )
    if args.json:
        setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(
            json.dumps(
                {
                    "setup": setup,
                    "device": gpu,
                    "serial_s_per_clip": serial_s / args.serial_clips,
                    "batch": rows,
                    "clients": client_rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
