"""``musicmed-stream evaluate RUN_DIR``: metrics.json and a report with plots for one session."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a rendered session or a session the daemon played",
        description="Evaluate a render folder (plan.json, clips/, session.wav), a daemon recording "
        "(recording.wav + events.jsonl) or a session of the daemon's state folder (events.jsonl, "
        "history.sqlite and the recording they name): writes metrics.json and evaluation.md/.html "
        "with plots (for a state folder into STATE_DIR/evaluations/SESSION_ID).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder, or the daemon's state folder")
    parser.add_argument(
        "--session",
        metavar="ID",
        help="in a state folder: the session to evaluate, an id or its unique beginning as "
        "`ctl history` shows it (default: the last)",
    )
    parser.add_argument(
        "--clap",
        metavar="ID_OR_DIR",
        help="CLAP model folder or cached Hub id (e.g. laion/larger_clap_music)",
    )
    parser.add_argument(
        "--mer",
        default="features",
        metavar="BACKEND[:PATH]",
        help="mood-tag recognition: features (default, no model), clap (needs --clap) or essentia:PATH",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the CLAP model (cpu, cuda, ...)")
    parser.add_argument("--top-k", type=int, default=1, help="tags predicted per clip for the Hamming score")
    parser.add_argument("--threshold", type=float, help="predict every tag scoring at least this instead")
    parser.add_argument("--format", choices=("md", "html"), default="md", help="report format")
    parser.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musicmed_stream.errors import ConfigError
    from musicmed_stream.evaluation import EvaluationOptions, evaluate_run

    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    options = EvaluationOptions(
        clap=args.clap,
        mer=args.mer,
        top_k=args.top_k,
        threshold=args.threshold,
        report_format=args.format,
        device=args.device,
    )
    metrics = evaluate_run(args.run_dir, options, out_dir=args.out, session=args.session)
    from musicmed_stream.evaluation.report import summary_rows

    run = metrics["run"]
    if run.get("session_id"):
        print(f"{'session':40s} {run['session_id']}")
    for name, value in summary_rows(metrics):
        print(f"{name:40s} {value}")
    print(f"wrote metrics.json and evaluation.{args.format} in {run['output']}", file=sys.stderr)
    return 0
