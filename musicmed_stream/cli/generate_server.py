"""``musicmed-stream generate-server``: MusicGen as a shared, batching service on Ray Serve."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from musicmed_stream.errors import ConfigError

RAY_HINT = "pip install 'musicmed-stream[serve]'"


def run(args: argparse.Namespace) -> int:
    from musicmed_stream.serving.settings import load_generate_server_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_generate_server_config(args.config)
    settings = config.serve
    if args.ray_address is not None:
        settings = settings.model_copy(update={"ray_address": args.ray_address})
    try:
        from musicmed_stream.serving.app import start_service, stop_service
    except ImportError as exc:
        raise ConfigError(f"generate-server needs Ray Serve ({exc.name} is missing): {RAY_HINT}") from exc

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    start_service(settings, config.musicgen.engine_options())
    print(
        f"generation service on http://{settings.host}:{settings.port} "
        f"({settings.max_batch_size} slots per replica, {settings.batching} batching); Ctrl-C stops it",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        stop_service(shutdown_ray=not settings.ray_address)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate-server",
        help="serve MusicGen clips to many daemons from one GPU pool (Ray Serve)",
        description="Start the generation service: [serve] and [engine.musicgen] from the config file.",
    )
    parser.add_argument("--config", required=True, help="TOML file with [serve] and [engine.musicgen]")
    parser.add_argument(
        "--ray-address",
        help='join this Ray cluster ("auto", "ray://HEAD:10001"); overrides [serve] ray_address',
    )
    parser.set_defaults(func=run)
