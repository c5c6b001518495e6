"""``musicmed-stream render``: a whole session to audio files, resumable."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from musicmed_stream.chain import ChainConfig
from musicmed_stream.cli.common import add_plan_arguments, plan_from_args
from musicmed_stream.engines.registry import ENGINE_NAMES, create_engine
from musicmed_stream.errors import ConfigError
from musicmed_stream.render import FORMATS, render_session


def _read_toml(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read chain config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"chain config {path} is not valid TOML: {exc}") from exc


def chain_config_from_file(path: str | None) -> ChainConfig:
    """The ``[chain]`` table of a TOML file (e.g. the daemon's config.toml); defaults without one."""
    if path is None:
        return ChainConfig()
    tree = _read_toml(path)
    table = tree.get("chain", {})
    if not isinstance(table, dict):
        raise ConfigError(f"chain config {path}: [chain] must be a table")
    return ChainConfig.from_dict(table)


PALETTE_KEYS = ("exclude_genres", "exclude_instruments")


def session_palette_from_file(path: str) -> dict[str, tuple[str, ...]]:
    """``exclude_genres`` / ``exclude_instruments`` of a TOML file's ``[session]`` table (the
    daemon's clinical palette, so that a render of the same config.toml draws what the daemon
    would); only the keys the file sets. The tag names are checked when the plan is made."""
    table = _read_toml(path).get("session", {})
    if not isinstance(table, dict):
        raise ConfigError(f"chain config {path}: [session] must be a table")
    palette = {}
    for key in PALETTE_KEYS:
        if key in table:
            value = table[key]
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"chain config {path}: session.{key} must be a list of strings")
            palette[key] = tuple(value)
    return palette


def run(args: argparse.Namespace) -> int:
    chain = chain_config_from_file(args.chain_config)
    plan = plan_from_args(args)
    musicgen = {k: v for k, v in (("model", args.model), ("adapter", args.adapter)) if v is not None}
    builtin = {"overlap_fraction": chain.crossfade_fraction, "soundfont": args.soundfont}
    engine = create_engine(args.engine, builtin=builtin, musicgen=musicgen)
    arguments = {k: v for k, v in vars(args).items() if k not in ("func",)}
    result = render_session(
        plan,
        engine,
        args.out,
        chain,
        audio_format=args.format,
        force=args.force,
        arguments=arguments,
        # A render resumed with other voices would mix two sounds: the voices are part of the key.
        key_extra={"musicgen": musicgen} if engine.name == "musicgen" else {"voices": engine.voices},
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
        "--engine", choices=ENGINE_NAMES, default="builtin", help="clip engine (default builtin)"
    )
    group.add_argument(
        "--soundfont",
        default="auto",
        metavar="SF2|auto|none",
        help="built-in engine voices: a GM .sf2/.sf3 played by FluidSynth, 'auto' (default: the first GM "
        "SoundFont found, else synthetic voices) or 'none' (synthetic voices)",
    )
    group.add_argument("--model", help="MusicGen model id or folder (engine musicgen/auto)")
    group.add_argument("--adapter", help="LoRA adapter folder (engine musicgen/auto)")
    group.add_argument("--out", default="out", metavar="DIR", help="output folder (default ./out)")
    group.add_argument("--format", choices=FORMATS, default="wav", help="session file format (default wav)")
    group.add_argument(
        "--force", action="store_true", help="replace a render made with other arguments in --out"
    )
    group.add_argument(
        "--chain-config",
        metavar="FILE",
        help="TOML file whose [chain] table sets the audio chain, and whose [session] exclude_genres/"
        "exclude_instruments the palette unless the flags are given (e.g. config.toml; default: built-in)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
