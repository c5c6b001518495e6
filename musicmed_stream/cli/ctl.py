"""``musicmed-stream ctl``: steer a running daemon over its websocket (see ``docs/protocol.md``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from musicmed_stream.control.client import DEFAULT_URL, ControlClient, build_command

TOKEN_ENV = "MUSICMED_CONTROL_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    # The connection options work before and after the command (``ctl --json status`` and
    # ``ctl status --json``); SUPPRESS keeps a subcommand from overwriting what came before it.
    def connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
        def default(value: Any) -> Any:
            return value if defaults else argparse.SUPPRESS

        parser.add_argument(
            "--url", default=default(DEFAULT_URL), help=f"daemon websocket (default {DEFAULT_URL})"
        )
        parser.add_argument(
            "--token", default=default(None), help=f"control token (default: ${TOKEN_ENV}, if set)"
        )
        parser.add_argument("--json", action="store_true", default=default(False), help="print raw JSON")
        parser.add_argument(
            "--follow",
            action="store_true",
            default=default(False),
            help="after the reply, print events as they come until the session ends",
        )
        parser.add_argument(
            "--timeout", type=float, default=default(30.0), help="seconds to wait for a reply (default 30)"
        )

    parser = subparsers.add_parser(
        "ctl",
        help="control a running daemon (start, set-target, pause, volume, status...)",
        description="Send one command to a running musicmed-stream daemon and print its reply.",
    )
    connection_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, defaults=False)
    commands = parser.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)

    start = commands.add_parser("start", parents=[common], help="start a session from FROM to TO")
    start.add_argument("start", metavar="FROM", help='current state: emotion, mood tag or "v,a"')
    start.add_argument("target", metavar="TO", help="target state, same forms")
    start.add_argument("--minutes", type=float)
    start.add_argument("--clip-seconds", type=float)
    start.add_argument("--path", choices=("line", "arc"))
    start.add_argument("--temperature", type=float)
    start.add_argument("--seed", type=int)

    target = commands.add_parser(
        "set-target", parents=[common], help='re-target the session (negative "v,a": put -- before it)'
    )
    target.add_argument("target", metavar="TARGET", help='emotion, mood tag or "valence,arousal"')

    for name, text in (
        ("pause", "pause playback"),
        ("resume", "resume playback"),
        ("skip", "crossfade to the next segment now"),
        ("status", "print the daemon's state"),
        ("follow", "print events until the session ends"),
    ):
        commands.add_parser(name, parents=[common], help=text)

    stop = commands.add_parser("stop", parents=[common], help="end the session with a fade-out")
    stop.add_argument("--fade", type=float, dest="fade_seconds", help="fade-out seconds (default: daemon's)")

    volume = commands.add_parser("volume", parents=[common], help="set the volume (0..1)")
    volume.add_argument("volume", type=float, metavar="LEVEL")

    schema = commands.add_parser("schema", help="print or write the protocol's JSON Schema")
    schema.add_argument("--write", action="store_true", help="write it into protocols/")
    schema.add_argument("--check", action="store_true", help="exit 1 if protocols/ is out of date")

    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.ctl_command == "schema":
        return _schema(args)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    return asyncio.run(_session(args, token))


def _schema(args: argparse.Namespace) -> int:
    from musicmed_stream.control import schema

    if args.check:
        return schema.main(["--check"])
    if args.write:
        return schema.main([])
    print(schema.render_schema(), end="")
    return 0


def _command(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    """The protocol command for the parsed arguments (``None`` for ``follow``)."""
    match args.ctl_command:
        case "start":
            options = {
                k: getattr(args, k) for k in ("minutes", "clip_seconds", "path", "temperature", "seed")
            }
            fields = {"from": args.start, "to": args.target}
            return "start", fields | {k: v for k, v in options.items() if v is not None}
        case "set-target":
            return "set_target", {"target": args.target}
        case "stop":
            return "stop", {"fade_seconds": args.fade_seconds}
        case "volume":
            return "volume", {"volume": args.volume}
        case "follow":
            return None
        case name:
            return name, {}


async def _session(args: argparse.Namespace, token: str | None) -> int:
    command = _command(args)
    if command is not None:
        build_command(command[0], **command[1])  # a bad value is reported before connecting
    async with await ControlClient.connect(args.url, token=token, timeout=min(args.timeout, 10.0)) as client:
        if args.follow or command is None:
            await client.subscribe()  # before the command, so no event it causes is missed
        if command is not None:
            kind, fields = command
            result = await client.request(kind, timeout=args.timeout, **fields)
            print(json.dumps(result) if args.json else format_result(kind, result), flush=True)
        if args.follow or command is None:
            async for event in client.events():
                print(event.model_dump_json() if args.json else format_event(event), flush=True)
                if event.event == "session_ended":
                    break
    return 0


def _point(data: dict[str, Any] | None) -> str:
    if not data or data.get("valence") is None:
        return "?"
    return f"({data['valence']:+.2f}, {data['arousal']:+.2f})"


def format_plan(plan: dict[str, Any]) -> str:
    segments = plan.get("segments", [])
    total = sum(s.get("duration_s", 0.0) for s in segments)
    labels = f" {plan.get('start_label', '')} -> {plan.get('target_label', '')}".rstrip(" ->")
    return (
        f"{len(segments)} segments, {total / 60:.1f} min:{labels} "
        f"{_point(plan.get('start'))} -> {_point(plan.get('target'))}"
    )


def format_result(command: str, result: dict[str, Any]) -> str:
    """The reply as a person reads it."""
    if command == "status":
        lines = [f"state:    {result.get('state', '?')}"]
        if result.get("session_id"):
            plan = result.get("plan") or {}
            n = len(plan.get("segments", []))
            index = result.get("segment_index")
            where = f"{index + 1}/{n}" if index is not None and n else "-"
            lines += [
                f"session:  {result['session_id']}",
                f"segment:  {where}  {result.get('emotion') or ''}  {_point(result)}",
                f"prompt:   {result.get('prompt') or '-'}",
                f"played:   {result.get('played_s') or 0:.1f} s",
                f"buffer:   {result.get('buffer_s') or 0:.1f} s",
            ]
            if plan:
                lines.append(f"plan:     {format_plan(plan)}")
        if result.get("volume") is not None:
            lines.append(f"volume:   {result['volume']:.2f}")
        return "\n".join(lines)
    parts = ["ok"]
    if result.get("session_id"):
        parts.append(f"session {result['session_id']}")
    if isinstance(result.get("plan"), dict):
        parts.append(f"plan: {format_plan(result['plan'])}")
    parts += [
        f"{k}={v}" for k, v in result.items() if k not in ("session_id", "plan") and not isinstance(v, dict)
    ]
    return "  ".join(parts)


def format_event(event: Any) -> str:
    """One line per event: time, type, its data (plans summarized)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
    fields = []
    for key, value in event.data.model_dump().items():
        if key == "plan" and isinstance(value, dict):
            fields.append(f"plan=[{format_plan(value)}]")
        elif isinstance(value, float):
            fields.append(f"{key}={value:.3g}")
        elif isinstance(value, str) and " " in value:
            fields.append(f"{key}={value!r}")
        else:
            fields.append(f"{key}={value}")
    return f"{stamp} {event.event} {' '.join(fields)}".rstrip()
