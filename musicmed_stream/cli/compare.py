"""``musicmed-stream compare``: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: print("compare: not yet implemented") or 1)
