"""``musicmed-stream plan``: print the iso-principle plan of a session."""

from __future__ import annotations

import argparse

from musicmed_stream.cli.common import add_plan_arguments, plan_from_args
from musicmed_stream.planner import Plan


def format_time(seconds: float) -> str:
    """``754.5`` -> ``"12:34.5"``."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):d}:{rest:04.1f}"


def format_plan(plan: Plan) -> str:
    """A readable segment table: index, time, valence, arousal, emotion, prompt."""
    s = plan.settings
    lines = [
        f"{plan.start_label} ({plan.start.valence:+.2f}, {plan.start.arousal:+.2f}) -> "
        f"{plan.target_label} ({plan.target.valence:+.2f}, {plan.target.arousal:+.2f}): "
        f"{len(plan.segments)} clips, {format_time(plan.duration_s)}, path {s.path}, "
        f"temperature {s.temperature:g}, seed {s.seed}",
        f"never drawn: genres {', '.join(s.exclude_genres) or 'none'}; "
        f"instruments {', '.join(s.exclude_instruments) or 'none'}",
        f"{'#':>3}  {'time':>7}  {'V':>6}  {'A':>6}  {'emotion':<13} prompt",
    ]
    for seg in plan.segments:
        lines.append(
            f"{seg.index:>3}  {format_time(seg.start_s):>7}  {seg.valence:+6.2f}  {seg.arousal:+6.2f}  "
            f"{seg.emotion:<13} {seg.prompt}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    print(plan.to_json() if args.json else format_plan(plan))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="print the iso-principle plan from one emotional state to another",
        description="Plan a session: match the start state, move step by step to the target.",
    )
    add_plan_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(func=run)
