"""Flags shared by the commands that plan a session (``plan``, ``render``, ``serve``)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from musicmed_stream.emotion import TagMapping, load_tag_mapping
from musicmed_stream.planner import (
    Plan,
    PlanSettings,
    TagStatistics,
    load_jamendo_statistics,
    plan_session,
    validate_settings,
)
from musicmed_stream.planner.types import tag_list
from musicmed_stream.service.config import Config, load_config

_DEFAULTS = PlanSettings()


def _tags_help(tags: tuple[str, ...]) -> str:
    return ",".join(tags) if tags else "none"


def add_plan_arguments(parser: argparse.ArgumentParser, *, require_states: bool = True) -> None:
    """Add the session-planning flags to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    require_states : bool
        Whether ``--from`` and ``--to`` are required (``serve`` takes them as optional defaults).
    """
    group = parser.add_argument_group("session plan")
    state_help = "emotion name, mood tag or 'valence,arousal' in [-1, 1] (negative: --from=-0.5,0.2)"
    group.add_argument(
        "--from", dest="start", required=require_states, metavar="STATE", help=f"start: {state_help}"
    )
    group.add_argument(
        "--to", dest="target", required=require_states, metavar="STATE", help=f"target: {state_help}"
    )
    group.add_argument("--minutes", type=float, help=f"session length (default {_DEFAULTS.minutes:g})")
    group.add_argument(
        "--clip-seconds", type=float, help=f"length of each clip (default {_DEFAULTS.clip_seconds:g})"
    )
    group.add_argument("--path", choices=("line", "arc"), help=f"path shape (default {_DEFAULTS.path})")
    group.add_argument(
        "--temperature",
        type=float,
        help=f"instrument/genre variety, 0 = never change (default {_DEFAULTS.temperature:g})",
    )
    group.add_argument("--seed", type=int, help=f"random seed (default {_DEFAULTS.seed})")
    group.add_argument(
        "--match-clips",
        type=int,
        help=f"clips that stay at the start state (default {_DEFAULTS.match_clips})",
    )
    group.add_argument(
        "--settle-clips", type=int, help=f"clips that sit at the target (default {_DEFAULTS.settle_clips})"
    )
    group.add_argument(
        "--jamendo",
        metavar="DIR",
        help="MTG-Jamendo metadata folder for instrument/genre statistics (default: built-in palette)",
    )
    group.add_argument("--mapping", metavar="FILE", help="mood/theme tag mapping JSON (default: built-in)")
    group.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon's TOML configuration (e.g. config.toml): its [session] defaults and palette, "
        "[chain], [engine] and [playback] apply unless a flag says otherwise",
    )
    group.add_argument("--chain-config", dest="config", metavar="FILE", help=argparse.SUPPRESS)
    group.add_argument(
        "--exclude-genres",
        metavar="A,B",
        help="MTG-Jamendo genre tags never drawn, comma-separated; '' for none "
        f"(default {_tags_help(_DEFAULTS.exclude_genres)})",
    )
    group.add_argument(
        "--exclude-instruments",
        metavar="A,B",
        help="MTG-Jamendo instrument tags never drawn, comma-separated; '' for none "
        f"(default {_tags_help(_DEFAULTS.exclude_instruments)})",
    )


_FLAG_FIELDS = {
    "minutes": "minutes",
    "clip_seconds": "clip_seconds",
    "path": "path",
    "temperature": "temperature",
    "seed": "seed",
    "match_clips": "match_clips",
    "settle_clips": "settle_clips",
    "exclude_genres": "exclude_genres",
    "exclude_instruments": "exclude_instruments",
}


def settings_from_args(
    args: argparse.Namespace, base: PlanSettings = _DEFAULTS, statistics: TagStatistics | None = None
) -> PlanSettings:
    """``base`` with the flags that were given; validated (``ConfigError`` on bad values; the
    exclusion lists may also name tags of ``statistics``)."""
    given = {
        field: getattr(args, flag)
        for flag, field in _FLAG_FIELDS.items()
        if getattr(args, flag, None) is not None
    }
    for field in ("exclude_genres", "exclude_instruments"):
        if field in given:
            given[field] = tag_list(given[field])  # "a,b" -> ("a", "b"), "" -> ()
    return validate_settings(replace(base, **given), statistics)


def statistics_from_args(args: argparse.Namespace) -> TagStatistics | None:
    """Statistics from ``--jamendo``, or ``None`` for the built-in palette."""
    folder = getattr(args, "jamendo", None)
    return load_jamendo_statistics(folder) if folder else None


def mapping_from_args(args: argparse.Namespace) -> TagMapping:
    """The tag mapping from ``--mapping``, or the built-in one."""
    return load_tag_mapping(getattr(args, "mapping", None))


def config_from_args(args: argparse.Namespace, overrides: dict[str, object] | None = None) -> Config:
    """The configuration of ``--config`` (the daemon's config.toml: ``[session]`` defaults,
    ``[chain]``, ``[engine]``, ``[playback]``; with ``MUSICMED_*`` overrides), else the defaults."""
    return load_config(getattr(args, "config", None), overrides=overrides)


def base_settings(config: Config, from_file: bool) -> PlanSettings:
    """Plan settings from ``config``: its ``[session]`` defaults when they come from a file, and
    always the chain's crossfade (the plan's clip grid overlaps its clips as the deck will) and
    the clinical palette."""
    session = config.session
    base = replace(
        _DEFAULTS,
        crossfade_fraction=config.chain.crossfade_fraction,
        exclude_genres=tuple(session.exclude_genres),
        exclude_instruments=tuple(session.exclude_instruments),
    )
    if not from_file:
        return base
    return replace(
        base,
        minutes=session.minutes,
        clip_seconds=session.clip_seconds,
        path=session.path,
        temperature=session.temperature,
        seed=session.seed,
    )


def plan_from_args(
    args: argparse.Namespace,
    config: Config | None = None,
    planning: tuple[TagStatistics, TagMapping] | None = None,
) -> Plan:
    """Plan the session the flags of :func:`add_plan_arguments` describe.

    Settings: the flags, else ``--config``'s ``[session]`` table, else the defaults; always on the
    clip grid of the configured crossfade. Statistics and mapping: ``--jamendo`` / ``--mapping``,
    else ``planning`` (what :func:`musicmed_stream.app.planning_inputs` found for the config and
    its engine), else the built-in ones."""
    from_file = getattr(args, "config", None) is not None
    config = config or config_from_args(args)
    statistics = statistics_from_args(args)
    mapping = mapping_from_args(args) if getattr(args, "mapping", None) else None
    if planning is not None:
        statistics = statistics or planning[0]
        mapping = mapping or planning[1]
    settings = settings_from_args(args, base_settings(config, from_file), statistics)
    return plan_session(args.start, args.target, settings, statistics, mapping=mapping or load_tag_mapping())
