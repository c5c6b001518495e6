"""``musicmed-stream emotions``: list the emotion vocabulary and the mood/theme tag mapping."""

from __future__ import annotations

import argparse
import json

from musicmed_stream.emotion import load_tag_mapping, load_vocabulary


def run(args: argparse.Namespace) -> int:
    vocabulary = load_vocabulary()
    mapping = load_tag_mapping(args.mapping, vocabulary)
    if args.json:
        data = {
            "emotions": [{"name": e.name, "valence": e.valence, "arousal": e.arousal} for e in vocabulary],
            "mapping": mapping.to_dict(),
        }
        print(json.dumps(data, indent=2))
        return 0
    print(f"{'emotion':<13} {'valence':>8} {'arousal':>8}")
    for e in sorted(vocabulary, key=lambda e: (-e.valence, -e.arousal)):
        print(f"{e.name:<13} {e.valence:+8.3f} {e.arousal:+8.3f}")
    print(f"\n{'tag':<13} {'kind':<6} emotion")
    for entry in mapping.entries:
        print(f"{entry.tag:<13} {entry.kind:<6} {entry.emotion.name if entry.emotion else '-'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emotions", help="list the emotion vocabulary and the mood/theme tag mapping"
    )
    parser.add_argument("--mapping", metavar="FILE", help="show this tag mapping instead of the built-in one")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(func=run)
