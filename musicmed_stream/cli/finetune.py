"""``musicmed-stream finetune``: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="(not yet implemented)")
    parser.set_defaults(func=lambda args: print("finetune: not yet implemented") or 1)
