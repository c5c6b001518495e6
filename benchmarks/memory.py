"""Benchmark: peak memory of a whole render, and of the daemon over a whole session.

Each measurement runs in a fresh Python process, so one does not inherit the other's memory; the
process reports its own resident set (``VmRSS`` from ``/proc/self/status``, sampled) and its peak
(``VmHWM``, the kernel's high-water mark). Budgets (issue 12): ``render`` at most 300 MiB for any
session length, the daemon at most 300 MB during a 15-minute session and flat after the first
minute (played clips are let go).

    python benchmarks/memory.py [--minutes 15] [--speed 20] [--soundfont auto|none]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

RENDER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    from musicmed_stream.cli.main import main

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    samples = []
    done = threading.Event()
    def sample():
        while not done.wait(0.1):
            samples.append(status("VmRSS"))
    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    code = main(sys.argv[1:])
    done.set()
    print(json.dumps({"code": code, "wall_s": time.perf_counter() - started, "peak_mib": status("VmHWM"),
                      "rss_samples_mib": samples[::10]}))
    """
)

DAEMON = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    from musicmed_stream.control.api import StartOptions
    from musicmed_stream.allocator import limit_fragmentation
    from musicmed_stream.app import build_engine
    from musicmed_stream.player.sinks import NullSink
    from musicmed_stream.service.config import load_config
    from musicmed_stream.service.daemon import Daemon

    minutes, speed, soundfont, state = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]

    def rss():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    async def run():
        limit_fragmentation()  # as `serve` does
        overrides = {"engine.name": "builtin", "engine.builtin.soundfont": soundfont, "session.jamendo": "",
                     "playback.ring_seconds": min(1.0 * speed, 5.0), "service.state_dir": state}
        config = load_config(env={}, overrides=overrides)
        engine = build_engine(config)
        daemon = Daemon(config, engine, NullSink(44100, 2, 1024, speed=speed), Path(state))
        await daemon.start()
        if daemon._warmup is not None:
            await daemon._warmup
        after_start = rss()
        queue = daemon.subscribe()
        await daemon.start_session(StartOptions("sad", "calm", minutes=minutes, seed=1))
        curve = []  # (played minutes, RSS MB) at every segment
        while True:
            event = await queue.get()
            if event.type == "segment_started":
                curve.append((round(event.data.start_s / 60, 2), round(rss(), 1)))
            if event.type == "session_ended":
                break
        await daemon.close(0.05)
        print(json.dumps({"after_start_mb": after_start, "curve": curve}))

    asyncio.run(run())
    """
)


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--speed", type=float, default=20.0, help="daemon: null sink speed vs real time")
    parser.add_argument("--soundfont", default="auto")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--skip-daemon", action="store_true")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {args.minutes:g}-minute session")
    with tempfile.TemporaryDirectory(prefix="musicmed-memory-") as tmp:
        if not args.skip_render:
            argv = ["render", "--from", "sad", "--to", "calm", "--minutes", str(args.minutes)]
            argv += ["--soundfont", args.soundfont, "--out", f"{tmp}/render", "--quiet"]
            render = run(RENDER, *argv)
            verdict = "within" if render["peak_mib"] <= 300 else "OVER"
            print(
                f"render      : peak {render['peak_mib']:.0f} MiB ({verdict} the 300 MiB budget), "
                f"{render['wall_s']:.1f} s wall; RSS every second: "
                + " ".join(f"{x:.0f}" for x in render["rss_samples_mib"][:30])
            )
        if not args.skip_daemon:
            daemon = run(DAEMON, str(args.minutes), str(args.speed), args.soundfont, f"{tmp}/state")
            curve = daemon["curve"]
            after_first = [mb for minute, mb in curve if minute >= 1.0]
            peak = max(mb for _, mb in curve)
            growth = (max(after_first) - min(after_first)) if after_first else 0.0
            verdict = "within" if peak <= 300 else "OVER"
            print(
                f"daemon      : {daemon['after_start_mb']:.0f} MB after start, peak {peak:.0f} MB during the "
                f"session ({verdict} the 300 MB budget), {growth:.1f} MB spread after the first minute"
            )
            print(
                "  RSS at segment starts (played min: MB): "
                + ", ".join(f"{m:g}: {mb:.0f}" for m, mb in curve[::4])
            )


if __name__ == "__main__":
    main()
