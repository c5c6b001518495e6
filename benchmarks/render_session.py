"""Benchmark: a whole session rendered with the built-in engine, FluidSynth alone on the same MIDI,
the engine clip by clip, and the audio chain alone.

Every line prints wall seconds, CPU seconds of this process (all its threads) and the 1-minute load
average when the measurement began: the machine may be shared, and the load includes this
benchmark's own threads. Real-time factor = session audio seconds / wall seconds. Targets on a
2-core machine: whole 15-minute session >= 100x real time (<= 9 s), audio chain alone (the clips
through the render's deck, in memory, on one thread) <= 6 s, one 30-s clip of the engine as fast as
it goes (the daemon's first sound; with ``stream`` the first piece is what counts).

The anchor is FluidSynth alone rendering the session's own ``session.mid`` with the same SoundFont,
the way ``fluidsynth -F out.wav SOUNDFONT session.mid`` does (a ``fluid_player`` driving a
``fluid_file_renderer`` through pyfluidsynth, so no Debian ``fluidsynth`` package is needed): once
with FluidSynth's defaults (what the command line does) and once with the engine's settings (linear
interpolation, 64 voices). The ratio ours / FluidSynth is the whole render's speed over
FluidSynth's, by wall time and by CPU time (the steadier figure on a shared machine); the render
does more than FluidSynth (the crossfaded clips overlap by a quarter, so it plays 4/3 of the
session's length, and the chain and the files come on top).

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
ENGINE_CLIPS = 12  # clips timed one by one, as the daemon asks for them


def load() -> float:
    """The 1-minute load average (the machine may be shared)."""
    return os.getloadavg()[0]


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """``(result, wall seconds, CPU seconds of this process, load average at the start)``."""
    start_load = load()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu, start_load


def line(label: str, audio_s: float, wall: float, cpu: float, start_load: float) -> str:
    return (
        f"{label:<44} {wall:7.2f} s wall {cpu:7.2f} s cpu {audio_s / wall:7.1f}x real time"
        f"  (load {start_load:.2f})"
    )


def fluidsynth_alone(midi: Path, soundfont: Path, rate: int, engine_settings: bool) -> float:
    """Seconds FluidSynth takes to render ``midi`` to a WAV file on its own (``fluidsynth -F``)."""
    import fluidsynth

    from musicmed_stream.engines.builtin.soundfont import INTERPOLATION_LINEAR, POLYPHONY, _load_fluidsynth

    _load_fluidsynth()
    with tempfile.TemporaryDirectory(prefix="musicmed-fluidsynth-") as tmp:
        settings: dict[str, Any] = {"audio.file.name": str(Path(tmp) / "session.wav")}
        if engine_settings:
            settings["synth.polyphony"] = POLYPHONY
        synth = fluidsynth.Synth(gain=0.2, samplerate=rate, channels=16, **settings)
        if engine_settings:
            fluidsynth._fl.fluid_synth_set_interp_method(synth.synth, -1, INTERPOLATION_LINEAR)
        synth.sfload(str(soundfont))
        player = fluidsynth.new_fluid_player(synth.synth)
        fluidsynth.fluid_player_add(player, str(midi).encode())
        fluidsynth.fluid_player_play(player)
        renderer = fluidsynth.new_fluid_file_renderer(synth.synth)
        wall = time.perf_counter()
        while fluidsynth.fluid_player_get_status(player) == fluidsynth.FLUID_PLAYER_PLAYING:
            if fluidsynth.fluid_file_renderer_process_block(renderer) != fluidsynth.FLUID_OK:
                break
        wall = time.perf_counter() - wall
        fluidsynth.delete_fluid_file_renderer(renderer)
        fluidsynth.delete_fluid_player(player)
        synth.delete()
    return wall


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
        f"{os.cpu_count()} CPUs, load average {load():.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="musicmed-bench-") as tmp:
        best = None
        for run in range(args.repeat):
            engine = BuiltinEngine(overlap_fraction=config.crossfade_fraction, soundfont=args.soundfont)
            out = Path(tmp) / f"run{run}"
            measured = timed(lambda out=out, engine=engine: render_session(plan, engine, out, config))
            if best is None or measured[1] < best[1]:
                best = measured
        result, wall, cpu, start_load = best
        session_s = result.duration_s
        print(f"voices: {engine.voices}")
        print(line("whole session (render_session)", session_s, wall, cpu, start_load))
        t = result.timings
        print(
            f"  of which: engine {t['generate']:.2f} s, chain {t['chain']:.2f} s (summed over its "
            f"threads), files {t['write']:.2f} s (wall, inside the render)"
        )
        soundfont = getattr(engine.soundfont, "path", None)
        if soundfont is not None:
            midi = result.files["midi"]
            for label, own in (("its defaults", False), ("engine settings", True)):
                fs_wall, fs_cpu, fs_load = timed(
                    lambda own=own: fluidsynth_alone(midi, soundfont, 44100, own)
                )[1:]
                print(line(f"FluidSynth alone, {label} (session.mid)", session_s, fs_wall, fs_cpu, fs_load))
                # Speed ratios: above 1, the whole render is faster than FluidSynth on its own.
                print(
                    f"  ratio ours / FluidSynth ({label}): {fs_wall / wall:.2f} by wall time, "
                    f"{fs_cpu / cpu:.2f} by CPU time"
                )

        per_clip, per_clip_cpu, first_piece = [], [], []
        previous = None
        start_load = load()
        for segment in plan.segments[:ENGINE_CLIPS]:  # the engine alone, clip by clip, as the daemon calls it
            clip, w, c, _ = timed(lambda s=segment, p=previous: engine.generate(s, p, seed=s.index))
            per_clip.append(w)
            per_clip_cpu.append(c)
            if hasattr(engine, "stream"):
                start = time.perf_counter()
                items = engine.stream(segment, previous, seed=segment.index)
                next(items)
                first_piece.append(time.perf_counter() - start)
                items.close()
            previous = Continuation(clip.audio[-clip.sample_rate :], clip.sample_rate, clip.state)
        print(
            f"engine per clip (first {len(per_clip)}): mean {np.mean(per_clip):.3f} s, "
            f"max {np.max(per_clip):.3f} s wall; cpu mean {np.mean(per_clip_cpu):.3f} s"
            f"  (load {start_load:.2f})"
        )
        if first_piece:
            print(
                f"  stream: first {engine.stream_chunk_seconds:g}-s piece after mean "
                f"{np.mean(first_piece):.3f} s, max {np.max(first_piece):.3f} s wall"
            )

        clips = [read_audio(p)[0] for p in sorted((result.out_dir / "clips").glob("clip_*.wav"))]
        rate = result.sample_rate
        chain_runs = [timed(lambda: render_clips(clips, rate, config)) for _ in range(args.repeat)]
        _, wall, cpu, start_load = min(chain_runs, key=lambda r: r[1])
        print(line("audio chain alone (render_clips, 1 thread)", session_s, wall, cpu, start_load))
        no_denoise = ChainConfig(denoise=False)
        print(
            line(
                "  same with denoise=False",
                session_s,
                *timed(lambda: render_clips(clips, rate, no_denoise))[1:],
            )
        )

        prepared, *measured = timed(lambda: [prepare_clip(c, rate, config) for c in clips])
        print(line("  clip level: trim+denoise+loudness", session_s, *measured))
        for name, step in (
            ("    denoise only", ChainConfig(trim_silence=False, normalize=False)),
            ("    loudness only", ChainConfig(trim_silence=False, denoise=False)),
        ):
            print(
                line(
                    name,
                    session_s,
                    *timed(lambda step=step: [prepare_clip(x, rate, step) for x in clips])[1:],
                )
            )

        def stream() -> int:
            deck = Deck(rate, result.channels, config, block_size=BLOCK)
            deck.begin()
            output, frames = OfflineOutput(deck, BLOCK), 0
            for n, clip in enumerate(prepared):
                deck.append(clip, Label("clip", n))
                frames += sum(block.shape[0] for block in output.ready())
            deck.finish(0.0)
            return frames + sum(block.shape[0] for block in output.rest())

        print(line("  block level: deck (crossfade+HP+limiter)", session_s, *timed(stream)[1:]))
        peak = max(float(np.abs(c).max()) for c in prepared)
        print(f"(largest prepared-clip sample {20 * np.log10(peak):.2f} dBFS before the limiter)")
        print(f"load average at the end {load():.2f}")


if __name__ == "__main__":
    main()
