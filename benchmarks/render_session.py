"""Benchmark: a whole session rendered with the built-in engine, and the audio chain alone.

Prints wall seconds, CPU seconds of this process and real-time factors (session audio seconds
per wall second). Targets on a 2-core machine: whole 15-minute session >= 60x real time
(<= 15 s), audio chain alone (the clips through the render's deck, in memory) <= 6 s, one
30-s clip of the engine < 0.5 s (so that the daemon's
first sound stays <= 0.5 s). The machine may be shared: CPU seconds show how much of the wall
time this process actually ran.

    python benchmarks/render_session.py [--minutes 15] [--clip-seconds 30] [--repeat 1]
        [--soundfont auto|none|FILE]   # sampled GM instruments (default) or synthetic voices
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.audio_io import read_audio
from musicmed_stream.chain import ChainConfig, prepare_clip
from musicmed_stream.engines.base import Continuation
from musicmed_stream.engines.builtin import BuiltinEngine
from musicmed_stream.planner import PlanSettings, plan_session
from musicmed_stream.player.deck import Deck, Label, OfflineOutput
from musicmed_stream.render import render_clips, render_session

BLOCK = 16384  # the deck's block in the offline render


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def line(label: str, audio_s: float, wall: float, cpu: float) -> str:
    return f"{label:<34} {wall:7.2f} s wall {cpu:7.2f} s cpu {audio_s / wall:8.1f}x real time"


def load() -> str:
    """The 1-minute load average (the machine may be shared)."""
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement (best is printed)")
    parser.add_argument("--soundfont", default="auto", help="built-in engine voices (default auto)")
    args = parser.parse_args()

    config = ChainConfig()
    settings = PlanSettings(
        minutes=args.minutes, clip_seconds=args.clip_seconds, crossfade_fraction=config.crossfade_fraction
    )
    plan = plan_session("sad", "calm", settings)
    print(
        f"{len(plan.segments)} clips of {args.clip_seconds:g} s, {args.minutes:g} min, chain defaults; "
        f"{os.cpu_count()} CPUs, load average {load()}"
    )
    with tempfile.TemporaryDirectory(prefix="musicmed-bench-") as tmp:
        best = None
        for run in range(args.repeat):
            engine = BuiltinEngine(overlap_fraction=config.crossfade_fraction, soundfont=args.soundfont)
            out = Path(tmp) / f"run{run}"
            result, wall, cpu = timed(
                lambda out=out, engine=engine: render_session(plan, engine, out, config)
            )
            if best is None or wall < best[1]:
                best = (result, wall, cpu)
        result, wall, cpu = best
        session_s = result.duration_s
        print(f"voices: {engine.voices}")
        print(line("whole session (render_session)", session_s, wall, cpu))
        t = result.timings
        print(
            f"  of which: engine {t['generate']:.2f} s, chain {t['chain']:.2f} s, "
            f"files {t['write']:.2f} s (wall, inside the render)"
        )

        per_clip = []
        previous = None
        for segment in plan.segments[:12]:  # the engine alone, clip by clip, as the daemon calls it
            clip, w, _ = timed(lambda s=segment, p=previous: engine.generate(s, p, seed=s.index))
            per_clip.append(w)
            previous = Continuation(clip.audio[-clip.sample_rate :], clip.sample_rate, clip.state)
        print(
            f"engine per clip (first {len(per_clip)}): mean {np.mean(per_clip):.3f} s, "
            f"max {np.max(per_clip):.3f} s (target < 0.5 s)"
        )

        clips = [read_audio(p)[0] for p in sorted((result.out_dir / "clips").glob("clip_*.wav"))]
        rate = result.sample_rate
        chain_runs = [timed(lambda: render_clips(clips, rate, config)) for _ in range(args.repeat)]
        _, wall, cpu = min(chain_runs, key=lambda r: r[1])
        print(line("audio chain alone (render_clips)", session_s, wall, cpu))
        no_denoise = ChainConfig(denoise=False)
        _, wall, cpu = timed(lambda: render_clips(clips, rate, no_denoise))
        print(line("  same with denoise=False", session_s, wall, cpu))

        prepared, wall_p, cpu_p = timed(lambda: [prepare_clip(c, rate, config) for c in clips])
        print(line("  clip level: trim+denoise+loudness", session_s, wall_p, cpu_p))
        for name, step in (
            ("    denoise only", ChainConfig(trim_silence=False, normalize=False)),
            ("    loudness only", ChainConfig(trim_silence=False, denoise=False)),
        ):
            _, w, c = timed(lambda step=step: [prepare_clip(x, rate, step) for x in clips])
            print(line(name, session_s, w, c))

        def stream() -> int:
            deck = Deck(rate, result.channels, config, block_size=BLOCK)
            deck.begin()
            output, frames = OfflineOutput(deck, BLOCK), 0
            for n, clip in enumerate(prepared):
                deck.append(clip, Label("clip", n))
                frames += sum(block.shape[0] for block in output.ready())
            deck.finish(0.0)
            return frames + sum(block.shape[0] for block in output.rest())

        _, wall_s, cpu_s = timed(stream)
        print(line("  block level: deck (crossfade+HP+limiter)", session_s, wall_s, cpu_s))
        peak = max(float(np.abs(c).max()) for c in prepared)
        print(f"(largest prepared-clip sample {20 * np.log10(peak):.2f} dBFS before the limiter)")
        print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
