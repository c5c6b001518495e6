"""``musicmed-stream compare RUN_A RUN_B ...``: a Table-1-style comparison of evaluated runs."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs (CLAP, mood recognition, speed, path adherence, loudness, clicks)",
        description="Print evaluated runs side by side (each folder holds metrics.json from `evaluate`): "
        "CLAP, AUPRC, Hamming, minutes per 15-minute session, then path adherence (Spearman valence "
        "and arousal, mean distance), integrated loudness, loudness range, largest loudness step, true "
        "peak and clicks, with each figure's change relative to the first run.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--format", choices=("md", "csv"), default="md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musicmed_stream.evaluation.compare import (
        comparability_notes,
        comparison,
        format_csv,
        format_markdown,
        load_table_row,
    )

    rows = [load_table_row(folder) for folder in args.runs]
    for note in comparability_notes(args.runs, rows):
        print(f"musicmed-stream: note: {note}", file=sys.stderr)
    table = comparison(args.runs, rows)
    print(format_csv(table) if args.format == "csv" else format_markdown(table), end="")
    return 0
