"""``musicmed-stream serve``: run the daemon (generate ahead, play, listen for control)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the daemon: play sessions, steered over the websocket control channel",
        description="Run the music-medicine daemon. Settings come from --config (or $MUSICMED_CONFIG), "
        "then MUSICMED_<SECTION>_<KEY> environment variables, then these flags.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (see config.toml)")
    parser.add_argument("--engine", choices=("auto", "builtin", "musicgen"), help="engine.name")
    parser.add_argument("--sink", choices=("sounddevice", "file", "null"), help="sink.type")
    parser.add_argument("--sink-file", metavar="PATH", help="sink.file: recording of the file sink")
    parser.add_argument("--speed", type=float, help="sink.speed: pace of the file/null sinks vs real time")
    parser.add_argument("--device", help="sink.device: sounddevice output name or index")
    parser.add_argument("--host", help="control.host")
    parser.add_argument("--port", type=int, help="control.port (0: any free port)")
    parser.add_argument("--token", help="control.token (required when the host is not loopback)")
    parser.add_argument("--no-control", action="store_true", help="run without the control channel")
    parser.add_argument("--state-dir", metavar="DIR", help="service.state_dir")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="service.log_level"
    )
    parser.add_argument("--no-resume", action="store_true", help="do not resume a session saved before")
    parser.add_argument(
        "--event-log", metavar="PATH", help='service.event_log: JSON lines of every event ("" disables)'
    )
    parser.add_argument("--start-from", metavar="STATE", help="start a session at once from this state")
    parser.add_argument("--start-to", metavar="STATE", help="... toward this state (default session.to)")
    parser.add_argument("--minutes", type=float, help="session.minutes")
    parser.add_argument("--clip-seconds", type=float, help="session.clip_seconds")
    parser.add_argument("--seed", type=int, help="session.seed")
    parser.add_argument("--on-end", choices=("stop", "hold"), help="session.on_end")
    parser.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, object]:
    """Flags as ``"section.key"`` overrides (``None``: not given)."""
    return {
        "engine.name": args.engine,
        "sink.type": args.sink,
        "sink.file": args.sink_file,
        "sink.speed": args.speed,
        "sink.device": args.device,
        "control.host": args.host,
        "control.port": args.port,
        "control.token": args.token,
        "control.enabled": False if args.no_control else None,
        "service.state_dir": args.state_dir,
        "service.log_level": args.log_level,
        "service.resume": False if args.no_resume else None,
        "service.event_log": args.event_log,
        "session.minutes": args.minutes,
        "session.clip_seconds": args.clip_seconds,
        "session.seed": args.seed,
        "session.on_end": args.on_end,
    }


def run(args: argparse.Namespace) -> int:
    from musicmed_stream.control.api import StartOptions
    from musicmed_stream.service.config import load_config, state_dir
    from musicmed_stream.service.runner import configure_logging, serve
    from musicmed_stream.service.state import make_private_folder

    # the file's problems (missing, a folder, unreadable, not UTF-8, not TOML) are load_config's
    # ConfigError: one line, exit status 2
    path = args.config or os.environ.get("MUSICMED_CONFIG") or None
    overrides = overrides_from(args)
    config = load_config(path, overrides=overrides)
    configure_logging(config.service.log_level)
    # the state folder is the listener's own (0700), made so before anything is put in it
    with contextlib.suppress(OSError):  # one that cannot be made: build_daemon says so
        make_private_folder(state_dir(config))
    start = None
    if args.start_from or args.start_to:
        start = StartOptions(
            start=args.start_from or config.session.start, target=args.start_to or config.session.target
        )
    return asyncio.run(serve(config, config_path=path, overrides=overrides, start=start))
