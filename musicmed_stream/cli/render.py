"""``musicmed-stream render``: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: print("render: not yet implemented") or 1)
