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


def crossfade_fraction_from_args(args: argparse.Namespace) -> float:
    """The audio chain's crossfade fraction: from ``--chain-config`` when the command has one (the
    plan's clip grid must overlap its clips as the chain will), else the chain's default."""
    from musicmed_stream.chain import ChainConfig

    path = getattr(args, "chain_config", None)
    if not path:
        return ChainConfig().crossfade_fraction
    from musicmed_stream.cli.render import chain_config_from_file

    return chain_config_from_file(path).crossfade_fraction


def palette_from_args(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """The clinical palette's exclusion lists of ``--chain-config``'s ``[session]`` table when the
    command has that flag and the file sets them (a config.toml shared with the daemon), else ``{}``."""
    path = getattr(args, "chain_config", None)
    if not path:
        return {}
    from musicmed_stream.cli.render import session_palette_from_file

    return session_palette_from_file(path)


def plan_from_args(args: argparse.Namespace, base: PlanSettings = _DEFAULTS) -> Plan:
    """Plan the session the flags of :func:`add_plan_arguments` describe, on the clip grid of the
    audio chain's crossfade (:func:`crossfade_fraction_from_args`), within the clinical palette of
    the flags, else of ``--chain-config``'s ``[session]`` table, else the default."""
    base = replace(base, crossfade_fraction=crossfade_fraction_from_args(args), **palette_from_args(args))
    statistics = statistics_from_args(args)
    settings = settings_from_args(args, base, statistics)
    return plan_session(args.start, args.target, settings, statistics, mapping=mapping_from_args(args))
