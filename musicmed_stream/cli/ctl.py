"""``musicmed-stream ctl``: steer a running daemon over its websocket (see ``docs/protocol.md``).

Like ``mpc``: ``ctl`` alone prints the status as one line, ``ctl volume 50`` means 50 %. A ctl call
imports only the plain-JSON :class:`~musicmed_stream.control.client.Connection` (no pydantic, no
numpy), so that it starts fast; the daemon checks every command, and the values a person types
are checked here first, with messages in words.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
from typing import Any

from musicmed_stream.control.client import DEFAULT_URL, Connection, ControlError, normalize_url
from musicmed_stream.errors import MusicMedError

TOKEN_ENV = "MUSICMED_CONTROL_TOKEN"
URL_ENV = "MUSICMED_URL"
URL_ENV_OLD = "MUSICMED_CTL_URL"  # the first name of it, still read
CONFIG_ENV = "MUSICMED_CONFIG"

# The protocol's bounds (musicmed_stream.bounds, control/protocol.py), repeated here so that a ctl
# call need not build the pydantic models; tests/test_control_ctl.py checks they agree.
LIMITS: dict[str, tuple[float, float, bool]] = {  # name: (low, high, low is excluded)
    "minutes": (0.0, 240.0, True),
    "clip_seconds": (0.5, 120.0, False),
    "temperature": (0.0, 5.0, False),
    "seed": (0, 2**31 - 1, False),
    "fade_seconds": (0.0, 60.0, False),
    "extend": (-240.0, 240.0, False),
    "sleep": (0.0, 240.0, True),
    "limit": (1, 500, False),
}


class CtlError(MusicMedError):
    """A value typed on the command line that the daemon would refuse; the message says what fits."""


class _Parser(argparse.ArgumentParser):
    """Takes ``-0.2,0.5`` for the coordinates it is, not for an unknown option (Python 3.13's
    argparse does the same; 3.11 only knows plain negative numbers), so no ``--`` is needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")


def register(subparsers: argparse._SubParsersAction) -> None:
    # The connection options work before and after the command (``ctl --json status`` and
    # ``ctl status --json``); SUPPRESS keeps a subcommand from overwriting what came before it.
    def connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
        def default(value: Any) -> Any:
            return value if defaults else argparse.SUPPRESS

        parser.add_argument(
            "--url",
            default=default(None),
            help=f"the daemon: ws://HOST:PORT/ws, http://HOST:PORT/ or HOST:PORT (default: ${URL_ENV}, "
            f"else the daemon's config, else {DEFAULT_URL})",
        )
        parser.add_argument("--host", default=default(None), help="the daemon's host (default 127.0.0.1)")
        parser.add_argument(
            "--port", type=int, default=default(None), help="the daemon's port (default 8765)"
        )
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=default(None),
            help=f"the daemon's config.toml, for its [control] host, port and token (default: ${CONFIG_ENV})",
        )
        parser.add_argument(
            "--token", default=default(None), help=f"control token (default: ${TOKEN_ENV}, else the config's)"
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
        help="control a running daemon (status, start, set-target, volume, history...)",
        description="Send one command to a running musicmed-stream daemon and print its reply. "
        "Without a command: the status, as one line.",
    )
    connection_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, defaults=False)
    commands = parser.add_subparsers(dest="ctl_command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=text, description=text)

    command("status", "the daemon's state as one line (--json: all of it)")
    start = command("start", "start a session from FROM to TO, or a preset")
    start.add_argument("start", metavar="FROM", nargs="?", help='current state: emotion, mood tag or "v,a"')
    start.add_argument("target", metavar="TO", nargs="?", help="target state, same forms")
    start.add_argument("--preset", metavar="NAME", help="a preset of the daemon (see `ctl presets`)")
    start.add_argument("--replace", action="store_true", help="end the session that plays, then start")
    start.add_argument("--minutes", type=float)
    start.add_argument("--clip-seconds", type=float)
    start.add_argument("--path", choices=("line", "arc"))
    start.add_argument("--temperature", type=float)
    start.add_argument("--seed", type=int)

    target = command("set-target", "lead the session elsewhere (re-planned from where it is)")
    target.add_argument(
        "target", metavar="TARGET", help='emotion, mood tag or "valence,arousal" (e.g. -0.2,0.5)'
    )

    for name, text in (
        ("pause", "pause playback"),
        ("resume", "resume playback"),
        ("skip", "crossfade to the next part now"),
        ("presets", "the daemon's presets"),
    ):
        command(name, text)

    follow = command("follow", "print events until the session ends")
    follow.add_argument(
        "--only",
        metavar="TYPE,...",
        type=parse_event_types,
        help="only these events (e.g. segment_started,underrun)",
    )

    plan = command("plan", "the session's parts from the one playing on: when each starts, where it goes")
    plan.add_argument("--all", action="store_true", help="the parts already played too")

    stop = command("stop", "end the session with a fade-out")
    stop.add_argument("--fade", type=float, dest="fade_seconds", help="fade-out seconds (default: daemon's)")

    volume = command("volume", "set the volume: 0-100 (%%), 0.0-1.0, or a step like +10 or -10")
    volume.add_argument("level", metavar="LEVEL")

    extend = command("extend", "make the session longer (+5) or shorter (-3), in minutes")
    extend.add_argument("minutes", metavar="MINUTES")

    sleep = command("sleep", "fade the session out after MINUTES more of it; `off` cancels")
    sleep.add_argument("minutes", metavar="MINUTES|off")

    checkin = command("checkin", "note how the listener feels, before or after a session")
    checkin.add_argument("when", choices=("before", "after"))
    checkin.add_argument("state", metavar="FEELING", help='an emotion name or "valence,arousal"')

    history = command("history", "the latest sessions, with their check-ins")
    history.add_argument("--limit", type=int, default=20, help="how many (default 20)")

    schema = commands.add_parser("schema", help="print or write the protocol's JSON Schema")
    schema.add_argument("--write", action="store_true", help="write it into protocols/")
    schema.add_argument("--check", action="store_true", help="exit 1 if protocols/ is out of date")

    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.ctl_command == "schema":
        return _schema(args)
    if args.ctl_command is None:
        args.ctl_command = "status"
    url, token = resolve_connection(args)
    return asyncio.run(_session(args, url, token))


def _schema(args: argparse.Namespace) -> int:
    from musicmed_stream.control import schema

    if args.check:
        return schema.main(["--check"])
    if args.write:
        return schema.main([])
    print(schema.render_schema(), end="")
    return 0


# --- where the daemon is -------------------------------------------------------------------------


def resolve_connection(args: argparse.Namespace) -> tuple[str, str | None]:
    """The daemon's websocket URL and the token: ``--url``, else ``--host``/``--port``, else
    ``$MUSICMED_URL`` (or ``$MUSICMED_CTL_URL``), else the
    daemon's own config (``--config`` or ``$MUSICMED_CONFIG``: its ``[control]``), else the
    default; the token from ``--token``, else ``$MUSICMED_CONTROL_TOKEN``, else that config."""
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if not args.url and (args.host or args.port is not None):
        host = args.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return normalize_url(f"{host}:{8765 if args.port is None else args.port}"), token
    url = args.url or os.environ.get(URL_ENV) or os.environ.get(URL_ENV_OLD)
    if url:
        return normalize_url(url), token
    path = args.config or os.environ.get(CONFIG_ENV)
    if not path:
        return DEFAULT_URL, token
    # Only here: the daemon's configuration module is heavy (it validates every section).
    from musicmed_stream.service.config import load_config

    # Only the [control] overrides of the environment: ctl's own variables (MUSICMED_CTL_URL) are
    # no configuration keys, and another section's override is none of ctl's business.
    env = {k: v for k, v in os.environ.items() if k.startswith("MUSICMED_CONTROL_")}
    control = load_config(path, env=env).control
    if control.port == 0:
        raise CtlError(f"{path} lets the daemon pick any free port (control.port = 0): pass --url")
    host = control.host
    if host in ("", "0.0.0.0"):  # listening everywhere: this machine reaches it on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    host = f"[{host}]" if ":" in host else host
    return f"ws://{host}:{control.port}/ws", token or control.token or None


# --- values as a person types them ---------------------------------------------------------------


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CtlError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CtlError(f"{what} {text!r} is not a number")
    return value


def check_limit(name: str, value: float, what: str) -> float:
    """``value`` if it lies within the protocol's bounds for ``name``, else a message that says them."""
    low, high, open_low = LIMITS[name]
    if (value <= low if open_low else value < low) or value > high:
        span = f"more than {low:g} and at most {high:g}" if open_low else f"{low:g} to {high:g}"
        raise CtlError(f"{what} {value:g} is out of range: give {span}")
    return value


VOLUME_HELP = "give 0-100 (%), 0.0-1.0, or a step like +10 or -10"


def parse_volume(text: str, current: float | None = None) -> float:
    """The volume (0..1) that ``text`` asks for, the way mpc reads it: ``50`` and ``50%`` are
    50 %, a fraction with a point (``0.5``) is one as well, ``+10``/``-10`` step by ten points
    from ``current``, within 0..100 %."""
    spec = text.strip()
    step = spec[:1] in ("+", "-")
    percent = spec.endswith("%")
    number = spec.rstrip("%").strip()
    try:
        value = _number(number, "volume")
    except CtlError:
        raise CtlError(f"volume {text!r} is not a level: {VOLUME_HELP}") from None
    if step:
        if current is None:
            raise CtlError("the daemon did not say its volume, so there is nothing to step from")
        return min(1.0, max(0.0, round(current + value / 100, 4)))
    if not percent and "." in number and 0 <= value <= 1:
        return value
    if not 0 <= value <= 100:
        raise CtlError(f"volume {text!r} is out of range: {VOLUME_HELP}")
    return round(value / 100, 4)


def parse_minutes_change(text: str) -> float:
    """``+5``, ``5`` or ``-3`` minutes."""
    return check_limit("extend", _number(text, "minutes"), "extend by")


def parse_sleep(text: str) -> float | None:
    """Minutes until the fade-out, or ``None`` for ``off``."""
    if text.strip().lower() in ("off", "cancel", "none", "0"):
        return None
    return check_limit("sleep", _number(text, "sleep minutes"), "sleep timer of")


def parse_state(text: str) -> tuple[float, float, str]:
    """A feeling typed for a check-in: ``"v,a"`` or a name of the vocabulary (resolved here, as the
    daemon would), as valence, arousal and its label."""
    from musicmed_stream.emotion import resolve_state

    va, label = resolve_state(text)
    return va.valence, va.arousal, label


def _start_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in ("minutes", "clip_seconds", "temperature", "seed"):
        value = getattr(args, key)
        if value is not None:
            options[key] = check_limit(key, value, key.replace("_", " "))
    if args.path is not None:
        options["path"] = args.path
    return options


def find_preset(presets: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The preset called ``name`` (case does not matter; a unique beginning will do)."""
    wanted = name.strip().casefold()
    exact = [p for p in presets if str(p.get("name", "")).casefold() == wanted]
    begins = [p for p in presets if str(p.get("name", "")).casefold().startswith(wanted)]
    found = exact or begins
    if len(found) == 1:
        return found[0]
    names = ", ".join(repr(p.get("name")) for p in presets) or "none"
    if found:
        raise CtlError(f"preset {name!r} is ambiguous: it begins {', '.join(repr(p['name']) for p in found)}")
    raise CtlError(f"no preset {name!r}; the daemon offers: {names}")


# --- the call ------------------------------------------------------------------------------------


async def _session(args: argparse.Namespace, url: str, token: str | None) -> int:
    name = args.ctl_command
    follow = args.follow or name == "follow"
    prepared = _prepare(args)  # a bad value is reported before connecting
    async with await Connection.connect(url, token=token, timeout=min(args.timeout, 10.0)) as client:
        if follow:
            await client.subscribe()  # before the command, so no event it causes is missed
        if name != "follow":
            kind, result = await _execute(client, args, prepared)
            if args.json:
                print(json.dumps(result), flush=True)
            elif name in ("pause", "resume", "skip", "stop"):
                print(status_line(await client.status()), flush=True)  # as mpc: where it is now
            elif kind == "history":  # the status says which session still plays, and how far
                print(format_history(result.get("sessions") or [], await client.status()), flush=True)
            else:
                print(format_result(kind, result), flush=True)
        if follow:
            only = getattr(args, "only", None)
            async for event in client.events():
                if only is None or event.get("event") in only:
                    print(json.dumps(event) if args.json else format_event(event), flush=True)
                if event.get("event") == "session_ended":
                    break
    return 0


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of the command, as far as they can be known without the daemon."""
    match args.ctl_command:
        case "start":
            if args.preset is None and (args.start is None or args.target is None):
                raise CtlError("start needs FROM and TO (e.g. ctl start sad calm), or --preset NAME")
            return _start_options(args)
        case "set-target":
            return {"target": args.target}
        case "stop":
            fade = args.fade_seconds
            return {"fade_seconds": None if fade is None else check_limit("fade_seconds", fade, "fade")}
        case "volume":
            parse_volume(args.level, current=0.0)  # the form is checked now; a step needs the daemon
            return {}
        case "extend":
            return {"minutes": parse_minutes_change(args.minutes)}
        case "sleep":
            return {"minutes": parse_sleep(args.minutes)}
        case "checkin":
            valence, arousal, label = parse_state(args.state)
            return {"when": args.when, "valence": valence, "arousal": arousal, "label": label}
        case "history":
            return {"limit": int(check_limit("limit", args.limit, "--limit"))}
    return {}


async def _execute(client: Connection, args: argparse.Namespace, fields: dict[str, Any]) -> tuple[str, Any]:
    """Send the command; returns (how to print it, the result)."""
    match args.ctl_command:
        case "status":
            return "status", await client.status(plan=args.json)  # --json: all of it
        case "plan":
            status = await client.status(plan=True)
            return "plan", status | {"show_all": args.all}
        case "presets":
            return "presets", (await client.status()).get("presets") or []
        case "start":
            return "start", await _start(client, args, fields)
        case "set-target":
            return "replanned", await client.request("set_target", **fields)
        case "extend":
            return "replanned", await client.request("extend", **fields)
        case "volume":
            status = await client.status() if args.level.strip()[:1] in "+-" else {}
            level = parse_volume(args.level, status.get("volume"))
            return "volume", await client.request("volume", volume=level)
        case "sleep":
            return "sleep", await client.request("sleep_timer", **fields)
        case "checkin":
            label = fields.pop("label")
            result = await client.request("checkin", **fields)
            return "checkin", result | {"label": label}
        case "history":
            return "history", await client.request("history", **fields)
        case name:
            return name, await client.request(name, **fields)


async def _start(client: Connection, args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    start, target = args.start, args.target
    fields: dict[str, Any] = {}
    if args.preset is not None:
        preset = find_preset((await client.status()).get("presets") or [], args.preset)
        fields = {k: v for k, v in preset.items() if k not in ("name", "from", "to") and v is not None}
        # FROM, when given, is where the listener is; TO, when given too, overrides the preset's.
        start, target = start or preset.get("from"), target or preset.get("to")
    fields |= options
    if args.replace:
        fields["replace"] = True
    try:
        return await client.start(start, target, **fields)
    except ControlError as exc:
        if exc.code == "bad_message" and start is None and "from" in exc.reason:
            raise CtlError(
                f"preset {args.preset!r} does not say where the listener is, and this daemon needs to "
                f"know: give FROM, e.g. ctl start tense --preset {args.preset!r}"
            ) from None
        if exc.code == "rejected" and not args.replace:
            status = await client.status()
            if status.get("state") not in (None, "idle"):
                how = f"ctl set-target {_quote(target)}"
                raise CtlError(
                    f"{exc}\nhint: add --replace to end it and start this one, or lead it there: {how}"
                ) from None
        raise


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[\w.,+-]+", text) else repr(text)


# --- printing --------------------------------------------------------------------------------------


def _can_print(char: str, stream: Any) -> bool:
    """Whether ``stream`` (default: stdout) can show ``char``."""
    try:
        char.encode(getattr(stream or sys.stdout, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _arrow(stream: Any) -> str:
    """→ where the terminal can show it."""
    return "→" if _can_print("→", stream) else "->"


def clock(seconds: float | None) -> str:
    """``2:41``, ``1:02:03``; whole seconds shown, never rounded up (as the page does)."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    s = max(0, int(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _percent(value: float) -> str:
    return f"{round(value * 100)}%"


def plan_seconds(plan: dict[str, Any]) -> float | None:
    """The played length of a plan: where its last clip ends on the crossfaded grid (``start_s`` +
    ``duration_s``), never the sum of the clips (they overlap)."""
    ends = [
        s["start_s"] + s["duration_s"]
        for s in plan.get("segments") or []
        if isinstance(s.get("start_s"), int | float) and isinstance(s.get("duration_s"), int | float)
    ]
    return max(ends) if ends else None


def status_line(status: dict[str, Any], stream: Any = None) -> str:
    """``[playing] 7/40 calm→relaxed 2:41/15:07 (18%) sleep 12:00 vol 80% (limit 60%)``."""
    arrow = _arrow(stream or sys.stdout)
    state = status.get("state") or "?"
    parts = [f"[{state}]"]
    plan = status.get("plan") or {}
    if state != "idle":
        index = status.get("segment_index")
        count = status.get("segment_count") or len(plan.get("segments") or []) or None
        if index is not None and count:
            parts.append(f"{index + 1}/{count}")
        heard = status.get("emotion") or status.get("start_label") or plan.get("start_label")
        target = status.get("target_label") or plan.get("target_label")
        if heard or target:
            parts.append(f"{heard or '?'}{arrow}{target or '?'}")
        played, total = status.get("played_s"), status.get("total_s") or plan_seconds(plan)
        if total:
            played = played or 0.0
            parts.append(f"{clock(played)}/{clock(total)} ({_percent(min(1.0, played / total))})")
        if status.get("sleep_timer_s") is not None:
            parts.append(f"sleep {clock(status['sleep_timer_s'])}")
    if status.get("volume") is not None:
        parts.append(f"vol {_percent(status['volume'])}")
        cap = status.get("max_volume")
        if cap is not None and cap < 1:
            parts.append(f"(limit {_percent(cap)})")
    return " ".join(parts)


def format_plan(plan: dict[str, Any], stream: Any = None) -> str:
    """``sad→calm, 24 parts, 3:02``."""
    arrow = _arrow(stream or sys.stdout)
    segments = plan.get("segments") or []
    labels = f"{plan.get('start_label') or '?'}{arrow}{plan.get('target_label') or '?'}"
    return f"{labels}, {len(segments)} parts, {clock(plan_seconds(plan))}"


def format_preset(preset: dict[str, Any], stream: Any = None) -> str:
    arrow = _arrow(stream or sys.stdout)
    where = f"{preset['from']} {arrow} " if preset.get("from") else f"{arrow} "
    minutes = f", {preset['minutes']:g} min" if preset.get("minutes") is not None else ""
    return f"{preset.get('name', '?')}: {where}{preset.get('to', '?')}{minutes}"


def format_result(command: str, result: Any) -> str:
    """The reply as a person reads it."""
    match command:
        case "status":
            return status_line(result)
        case "presets":
            return "\n".join(format_preset(p) for p in result) or "the daemon offers no presets"
        case "plan":
            return format_upcoming(result, show_all=bool(result.get("show_all")))
        case "start":
            return f"started {result.get('session_id')}: {format_plan(result.get('plan') or {})}"
        case "replanned":
            plan = result.get("plan") or {}
            return f"re-planned from part {result.get('from_index', 0) + 1}: {format_plan(plan)}"
        case "volume":
            return f"vol {_percent(result.get('volume', 0.0))}"
        case "sleep":
            left = result.get("seconds_left")
            return "sleep timer off" if left is None else f"sleep timer: fades out in {clock(left)}"
        case "checkin":
            session = result.get("session_id")
            where = f"with session {session}" if session else "not tied to a session yet"
            point = f"({result['valence']:+.2f}, {result['arousal']:+.2f})"
            return f"noted {result.get('moment')}: {result.get('label')} {point}, {where}"
        case "history":
            return format_history(result.get("sessions") or [])
    return "ok"


ENDINGS = {"finished": "finished", "stopped": "stopped", "error": "error"}


def _feeling(checkins: list[dict[str, Any]], moment: str) -> str | None:
    """The last check-in of ``moment``, as the nearest emotion's name."""
    points = [c for c in checkins if c.get("moment") == moment]
    if not points:
        return None
    from musicmed_stream.emotion import VA, nearest_emotion

    return nearest_emotion(VA(points[-1]["valence"], points[-1]["arousal"])).name


def felt(checkins: list[dict[str, Any]], arrow: str = "→") -> str:
    """``tense→calm``; ``before: tense`` or ``after: calm`` when only one was given; ``-`` for none."""
    before, after = _feeling(checkins, "before"), _feeling(checkins, "after")
    if before and after:
        return f"{before}{arrow}{after}"
    if before or after:
        return f"before: {before}" if before else f"after: {after}"
    return "-"


def format_history(
    sessions: list[dict[str, Any]], status: dict[str, Any] | None = None, stream: Any = None
) -> str:
    """One row per session: date, id, from→to, played/planned, how it ended, felt before→after.
    ``status``: the daemon's, for the session that still plays (the history has its end only
    once it ended)."""
    if not sessions:
        return "no sessions yet"
    arrow = _arrow(stream or sys.stdout)
    status = status or {}
    current = status.get("session_id") if status.get("state") not in (None, "idle") else None
    rows = [("date", "id", f"from{arrow}to", "played", "ended", f"felt before{arrow}after")]
    for s in sessions:
        started = s.get("started_at")
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "?"
        played, planned = s.get("played_s"), s.get("planned_s")
        ended = ENDINGS.get(s.get("end_reason") or "", s.get("end_reason") or "not ended")
        if s.get("end_reason") is None and s.get("id") == current:
            played, planned, ended = status.get("played_s"), status.get("total_s") or planned, "playing"
        journey = f"{s.get('start_label', '?')}{arrow}{s.get('target_label', '?')}"
        length = f"{clock(played) if played is not None else '-'}/{clock(planned)}"
        rows.append(
            (date, str(s.get("id", "?"))[:8], journey, length, ended, felt(s.get("checkins") or [], arrow))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def parse_event_types(text: str) -> frozenset[str]:
    """``segment_started,underrun`` as a set of event types (``--only``)."""
    types = frozenset(t.strip() for t in text.split(",") if t.strip())
    if not types:
        raise argparse.ArgumentTypeError("give event types separated by commas: segment_started,underrun")
    return types


def format_upcoming(status: dict[str, Any], show_all: bool = False, stream: Any = None) -> str:
    """The plan as a table, from the part playing on (``show_all``: every part)::

    sad→calm, 40 parts, 15:07; playing part 7
    ▶  7  2:15  sad        -0.60 -0.40  piano, classical
       8  2:37  depressed  -0.55 -0.33  piano, ambient
    """
    plan = status.get("plan") or {}
    segments = plan.get("segments") or []
    if status.get("state") in (None, "idle") or not segments:
        return "no session plays"
    now = status.get("segment_index")
    header = format_plan(plan, stream)
    if now is not None:
        header += f"; playing part {now + 1}"
    first = 0 if show_all or now is None else now
    width = max(len(str(s.get("emotion") or "")) for s in segments)
    rows = [header]
    for s in segments[first:]:
        index = s.get("index", 0)
        mark = "▶" if index == now and _can_print("▶", stream) else ">" if index == now else " "
        sounds = ", ".join(str(s[k]) for k in ("instrument", "genre") if s.get(k))
        rows.append(
            f"{mark} {index + 1:>3}  {clock(s.get('start_s')):>6}  {s.get('emotion') or '?'!s:<{width}}"
            f"  {s.get('valence', 0.0):+.2f} {s.get('arousal', 0.0):+.2f}  {sounds}".rstrip()
        )
    return "\n".join(rows)


def format_event(event: dict[str, Any]) -> str:
    """One line per event: time, type, its data (plans summarized)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time") or time.time()))
    fields = []
    for key, value in (event.get("data") or {}).items():
        if key == "plan" and isinstance(value, dict):
            fields.append(f"plan=[{format_plan(value)}]")
        elif isinstance(value, float):
            fields.append(f"{key}={value:.3g}")
        elif isinstance(value, str) and " " in value:
            fields.append(f"{key}={value!r}")
        else:
            fields.append(f"{key}={value}")
    return f"{stamp} {event.get('event')} {' '.join(fields)}".rstrip()
