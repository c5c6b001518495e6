"""Daemon latency and load: time to first sound, re-target latency, underruns, playback-path CPU.

Usage::

    python benchmarks/daemon_latency.py                 # built-in engine, 30-s clips, 15-min soak at 10x
    python benchmarks/daemon_latency.py --speed 20 --minutes 15 --engine builtin

Targets with the built-in engine (issue 12): first sound <= 0.3 s after ``start``, a re-target
audible <= 0.5 s after the command reaches the daemon (the first clip and a cut-in stream: their
first seconds are made first), 0 underruns over a full session, playback path (the deck: timeline
mix, high-pass, limiter, gains) <= 5 % of one core.

First sound and re-target are measured on a null sink paced in real time: from the command to the
moment the sink has consumed the first frame of the new clip (the ``segment_started`` marker).
The soak runs a whole session on a null sink ``--speed`` times faster than real time; the playback
path's CPU is reported per second of audio, so it does not depend on the speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from musicmed_stream.app import build_engine
from musicmed_stream.control.api import StartOptions
from musicmed_stream.control.events import Event
from musicmed_stream.player.sinks import NullSink
from musicmed_stream.service.config import Config, load_config
from musicmed_stream.service.daemon import Daemon

TARGETS = ["happy", "calm", "tense"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_event(queue: asyncio.Queue[Event], kind: str, timeout: float, **match: Any) -> Event:
    async def wait() -> Event:
        while True:
            event = await queue.get()
            if event.type == kind and all(getattr(event.data, k, None) == v for k, v in match.items()):
                return event

    return await asyncio.wait_for(wait(), timeout)


def make_daemon(config: Config, engine_name: str, speed: float) -> Daemon:
    engine = build_engine(config.replace(engine=config.engine.replace(name=engine_name)))
    sink = NullSink(config.sink.sample_rate, config.sink.channels, config.sink.block_size, speed=speed)
    return Daemon(config, engine, sink, state_dir=None)


async def latency(config: Config, engine_name: str, repeats: int) -> dict[str, Any]:
    """First sound and re-target latency, real-time sink."""
    daemon = make_daemon(config, engine_name, 1.0)
    await daemon.start()
    if daemon._warmup is not None:  # measure a warm daemon, as a session request meets it
        await daemon._warmup
    queue = daemon.subscribe()
    firsts, retargets = [], []
    try:
        for run in range(repeats):
            started = time.perf_counter()
            await daemon.start_session(StartOptions("sad", "calm", seed=run))
            await wait_event(queue, "segment_started", 60, index=0)
            firsts.append(time.perf_counter() - started)
            for target in TARGETS:
                asked = time.perf_counter()
                result = await daemon.set_target(target)
                await wait_event(queue, "segment_started", 60, index=result.from_index)
                retargets.append(time.perf_counter() - asked)
            await daemon.stop(0.1)
        underruns = daemon.sink.counters()[0]
    finally:
        await daemon.close(0.05)
    return {"first_sound_s": firsts, "retarget_s": retargets, "realtime_underrun_blocks": underruns}


async def soak(config: Config, engine_name: str, speed: float, minutes: float) -> dict[str, Any]:
    """A whole session on a sped-up null sink: underruns, bridges, CPU.

    The ring is scaled by ``speed`` so that it covers the same wall-clock time as at real time
    (the margin the feeder thread has against a stall is what the soak is about).
    """
    ring = min(config.playback.ring_seconds * speed, 5.0)
    config = config.replace(playback=config.playback.replace(ring_seconds=ring))
    daemon = make_daemon(config, engine_name, speed)
    await daemon.start()
    if daemon._warmup is not None:
        await daemon._warmup
    queue = daemon.subscribe()
    counts: dict[str, int] = {}
    wall, cpu = time.perf_counter(), cpu_seconds()
    feeder_before, frames_before = daemon.deck.render_seconds, daemon.deck.render_frames
    info = await daemon.start_session(StartOptions("sad", "calm", minutes=minutes, seed=1))
    ended = None
    while ended is None:
        event = await queue.get()
        counts[event.type] = counts.get(event.type, 0) + 1
        if event.type == "session_ended":
            ended = event
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    feeder = daemon.deck.render_seconds - feeder_before
    audio_s = (daemon.deck.render_frames - frames_before) / daemon.sample_rate
    underrun_blocks, underrun_frames = daemon.sink.counters()
    await daemon.close(0.05)
    return {
        "segments_planned": len(info.plan["segments"]),
        "segments_started": counts.get("segment_started", 0),
        "played_s": ended.data.played_s,
        "end_reason": ended.data.reason,
        "bridges": counts.get("bridge", 0),
        "errors": counts.get("error", 0),
        "underrun_blocks": underrun_blocks,
        "underrun_frames": underrun_frames,
        "wall_s": wall,
        "speed": speed,
        "playback_path_core_share": feeder / audio_s,
        "process_cpu_per_audio_s": cpu / audio_s,
        "process_cpu_share_of_wall": cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="TOML configuration (default: built-in defaults)")
    parser.add_argument("--engine", default="builtin")
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--speed", type=float, default=10.0, help="soak: null sink speed vs real time")
    parser.add_argument("--repeats", type=int, default=2, help="sessions for the latency figures")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    config = load_config(
        args.config,
        overrides={"session.clip_seconds": args.clip_seconds, "control.enabled": False, "sink.type": "null"},
    )
    results: dict[str, Any] = {"engine": args.engine, "clip_seconds": args.clip_seconds}
    results |= asyncio.run(latency(config, args.engine, args.repeats))
    first, retarget = results["first_sound_s"], results["retarget_s"]
    first_s = f"median {statistics.median(first):.2f} s, max {max(first):.2f} s"
    print(f"time to first sound   : {first_s} (target <= 0.3 s)")
    print(
        f"re-target audible     : median {statistics.median(retarget):.2f} s, max {max(retarget):.2f} s "
        f"over {len(retarget)} (target <= 0.5 s)"
    )
    print(f"underruns (real time) : {results['realtime_underrun_blocks']} blocks")
    if not args.skip_soak:
        results["soak"] = asyncio.run(soak(config, args.engine, args.speed, args.minutes))
        s = results["soak"]
        print(
            f"soak {args.minutes:g} min at {args.speed:g}x : {s['segments_started']}/{s['segments_planned']} "
            f"segments, {s['played_s']:.0f} s played in {s['wall_s']:.0f} s, end {s['end_reason']}"
        )
        print(
            f"underruns             : {s['underrun_blocks']} blocks ({s['underrun_frames']} frames), target 0"
        )
        print(f"bridges / errors      : {s['bridges']} / {s['errors']}")
        print(
            f"playback path CPU     : {100 * s['playback_path_core_share']:.2f} % of one core "
            "per second of audio (target <= 5 %)"
        )
        print(
            f"process CPU           : {s['process_cpu_per_audio_s']:.3f} CPU-s per audio second "
            f"({100 * s['process_cpu_share_of_wall']:.0f} % of one core at {args.speed:g}x)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
