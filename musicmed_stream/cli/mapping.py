"""``musicmed-stream mapping``: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mapping", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: print("mapping: not yet implemented") or 1)
