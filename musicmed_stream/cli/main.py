"""``musicmed-stream`` command line: one module per subcommand, each with ``register(subparsers)``.

A subcommand module's ``register`` adds its parser and sets ``func`` (called with the parsed
args, returns an exit code). Errors that are the user's (``MusicMedError``, ``OSError``) are
printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from musicmed_stream import __version__
from musicmed_stream.errors import MusicMedError

# Order is the order in ``--help``.
SUBCOMMAND_MODULES = (
    "emotions",
    "plan",
    "mapping",
    "render",
    "serve",
    "ctl",
    "evaluate",
    "compare",
    "finetune",
    "generate-server",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` one subcommand: then only its module is imported
    (``ctl`` must not pay for the planner's, the engines' or the evaluation's imports)."""
    parser = argparse.ArgumentParser(
        prog="musicmed-stream",
        description="Music medicine along the valence-arousal circumplex, following the iso principle.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"musicmed_stream.cli.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand ``argv`` starts with, if any (``--help`` and ``--version`` need the whole
    parser)."""
    return argv[0] if argv and argv[0] in SUBCOMMAND_MODULES else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_subcommand(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("musicmed-stream: interrupted", file=sys.stderr)
        return 130
    except (MusicMedError, OSError) as exc:
        print(f"musicmed-stream: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
