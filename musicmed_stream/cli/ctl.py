"""``musicmed-stream ctl``: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ctl", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: print("ctl: not yet implemented") or 1)
