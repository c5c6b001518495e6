"""``musicmed-stream render``: a whole session to audio files, resumable."""

from __future__ import annotations

import argparse
import sys

from musicmed_stream.allocator import limit_fragmentation
from musicmed_stream.app import build_engine, planning_inputs
from musicmed_stream.cli.common import add_plan_arguments, config_from_args, plan_from_args
from musicmed_stream.engines.registry import ENGINE_NAMES
from musicmed_stream.render import render_session
from musicmed_stream.render_settings import FORMATS, SAMPLE_FORMATS


def run(args: argparse.Namespace) -> int:
    limit_fragmentation()
    overrides = {
        "engine.name": args.engine or (None if args.config else "builtin"),
        "engine.builtin.soundfont": args.soundfont,
        "engine.musicgen.model": args.model,
        "engine.musicgen.adapter": args.adapter,
        "engine.musicgen.best_of": args.best_of,
        "engine.remote.best_of": args.best_of,
    }
    config = config_from_args(args, overrides)
    engine = build_engine(config)  # the daemon's engine, built the daemon's way
    plan = plan_from_args(args, config, planning_inputs(config, engine) if args.config else None)
    arguments = {k: v for k, v in vars(args).items() if k not in ("func",)}
    # A render resumed with other voices would mix two sounds: the voices are part of the key.
    key_extra = {"voices": getattr(engine, "voices", "")}
    if engine.name == "musicgen":
        key_extra = {"musicgen": config.engine.musicgen.model_dump()}
    result = render_session(
        plan,
        engine,
        args.out,
        config.chain,
        audio_format=args.format or config.render.format,
        sample_format=args.sample_format or config.render.sample_format,
        end_fade_s=config.playback.fade_seconds,
        force=args.force,
        arguments=arguments,
        key_extra=key_extra,
        progress=not args.quiet,
    )
    t = result.timings
    print(
        f"{result.files['session']}: {result.duration_s / 60:.2f} min, {len(plan.segments)} clips "
        f"({result.clips_resumed} resumed), engine {engine.name}, {t['total']:.1f} s "
        f"({result.realtime_factor:.1f}x real time), peak {result.peak_dbfs:.2f} dBFS",
        file=sys.stdout,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render a whole session offline (audio, clips, MIDI, plan, path plot, report)",
        description=(
            "Render a session from one emotional state to another into a folder. Re-running with the "
            "same arguments continues an interrupted render from its finished clips."
        ),
    )
    add_plan_arguments(parser)
    group = parser.add_argument_group("render")
    group.add_argument(
        "--engine", choices=ENGINE_NAMES, help="clip engine (default: builtin, or engine.name of --config)"
    )
    group.add_argument(
        "--soundfont",
        metavar="SF2|auto|none",
        help="built-in engine voices: a GM .sf2/.sf3 played by FluidSynth, 'auto' (the default: the "
        "first GM SoundFont found, else synthetic voices) or 'none' (synthetic voices)",
    )
    group.add_argument("--model", help="MusicGen model id or folder (engine musicgen/auto)")
    group.add_argument("--adapter", help="LoRA adapter folder (engine musicgen/auto)")
    group.add_argument(
        "--best-of",
        type=int,
        metavar="N",
        help="MusicGen (local or remote): N candidates per clip, the best fit to the planned emotion kept "
        "(scores in clips/clip_NNN.json)",
    )
    group.add_argument("--out", default="out", metavar="DIR", help="output folder (default ./out)")
    group.add_argument(
        "--format", choices=FORMATS, help="session file format (default: [render] format, else wav)"
    )
    group.add_argument(
        "--sample-format",
        choices=SAMPLE_FORMATS,
        help="session file samples (default: [render] sample_format, else PCM_24; FLOAT in WAV only)",
    )
    group.add_argument(
        "--force", action="store_true", help="replace a render made with other arguments in --out"
    )
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
