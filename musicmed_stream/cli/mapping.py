"""``musicmed-stream mapping agreement``: inter-rater agreement of tag -> emotion pile sorts."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.emotion import load_vocabulary
from musicmed_stream.emotion.agreement import kappa_label, majority_mapping, rater_agreement, read_ratings


def run_agreement(args: argparse.Namespace) -> int:
    names = [str(p) for p in args.files]
    result = rater_agreement([read_ratings(p) for p in args.files], names)
    mapping = None
    if args.out:
        sources = ", ".join(Path(p).name for p in args.files)
        mapping = majority_mapping(
            result, load_vocabulary(), f"majority of {result.n_raters} raters ({sources})"
        )
    kappa = None if math.isnan(result.kappa) else result.kappa
    if args.json:
        print(
            json.dumps(
                {
                    "raters": result.n_raters,
                    "tags": len(result.tags),
                    "categories": list(result.categories),
                    "fleiss_kappa": kappa,
                    "interpretation": kappa_label(result.kappa),
                    "majority": result.majority,
                    "votes": result.votes,
                    "ties": list(result.ties),
                },
                indent=2,
            )
        )
    else:
        print(f"raters: {result.n_raters}  tags: {len(result.tags)}  categories: {len(result.categories)}")
        shown = "undefined" if kappa is None else f"{kappa:.4f}"
        print(f"Fleiss' kappa: {shown} ({kappa_label(result.kappa)})")
        print(f"\n{'tag':<14} {'majority':<14} votes")
        for tag in result.tags:
            tie = "  (tie)" if tag in result.ties else ""
            print(f"{tag:<14} {result.majority[tag]:<14} {result.votes[tag]}/{result.n_raters}{tie}")
    if mapping is not None:
        write_text_atomic(args.out, json.dumps(mapping.to_dict(), indent=1) + "\n")
        print(f"wrote majority mapping to {args.out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mapping", help="tools for the mood/theme tag -> emotion mapping")
    actions = parser.add_subparsers(dest="mapping_command", metavar="ACTION", required=True)
    agreement = actions.add_parser(
        "agreement",
        help="Fleiss' kappa and majority mapping of several raters' tag -> emotion pile sorts",
        description="Each FILE is one rater: CSV 'tag,category' or JSON {tag: category} (or a mapping file). "
        "Categories are emotion names or 'theme'.",
    )
    agreement.add_argument("files", nargs="+", metavar="FILE", help="one rater's CSV or JSON")
    agreement.add_argument("--out", metavar="FILE", help="write the majority mapping as a mapping JSON file")
    agreement.add_argument("--json", action="store_true", help="print the result as JSON")
    agreement.set_defaults(func=run_agreement)
