"""Wiring: the configuration into the pipeline's parts, for ``serve`` and ``render`` alike.

emotion model -> iso planner -> engine -> audio chain -> player -> control: each stage takes its
own settings section; this module is the one place that reads a whole :class:`Config` and hands
each stage its part (so the render and the daemon build the same engine the same way).
"""

from __future__ import annotations

import logging
from pathlib import Path

from musicmed_stream.emotion import TagMapping, load_tag_mapping
from musicmed_stream.engines.base import Engine
from musicmed_stream.engines.registry import create_engine
from musicmed_stream.errors import ConfigError
from musicmed_stream.planner import TagStatistics, builtin_palette, load_jamendo_statistics
from musicmed_stream.player.sinks import open_sink
from musicmed_stream.service.config import Config, state_dir
from musicmed_stream.service.daemon import Daemon
from musicmed_stream.service.state import make_private_folder

log = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """The configured engine (``[engine]``): the built-in one lets its notes ring into the next clip
    over the chain's crossfade, so it gets ``chain.crossfade_fraction``."""
    settings = config.engine
    engine = create_engine(
        settings.name,
        builtin=settings.builtin.engine_options(config.chain.crossfade_fraction),
        musicgen=settings.musicgen.engine_options(),
        remote=settings.remote.engine_options(),
    )
    log.info("engine: %s (%d Hz, %d channel(s))", engine.name, engine.sample_rate, engine.channels)
    return engine


def planning_inputs(config: Config, engine: Engine | None = None) -> tuple[TagStatistics, TagMapping]:
    """The planner's instrument/genre statistics and mood-tag mapping.

    A LoRA adapter knows what it was trained with: its stored statistics and mapping come first
    (the prompts then use the tags the adapter learned); else ``session.jamendo`` (MTG-Jamendo
    counts) or the built-in palette, and ``session.mapping`` or the built-in mapping. A mapping
    set in the configuration wins over the adapter's.
    """
    adapter = getattr(engine, "adapter_info", None)
    statistics = adapter.statistics() if adapter is not None else None
    if statistics is not None:
        log.info("planning with the statistics of %s", statistics.source)
    else:
        folder = config.session.jamendo
        if folder and Path(folder).expanduser().is_dir():
            statistics = load_jamendo_statistics(folder)
        else:
            log.info("MTG-Jamendo metadata not found at %r: planning with the built-in palette", folder)
            statistics = builtin_palette()
    if config.session.mapping:
        mapping = load_tag_mapping(config.session.mapping)
    elif adapter is not None and adapter.tag_mapping:
        mapping = adapter.mapping()
        log.info("planning with the tag mapping of adapter %s", adapter.path)
    else:
        mapping = load_tag_mapping()
    return statistics, mapping


def build_daemon(config: Config) -> Daemon:
    """Engine, planning inputs, sink (with its fallback) and state folder: the daemon."""
    engine = build_engine(config)
    statistics, mapping = planning_inputs(config, engine)
    folder = state_dir(config)
    try:
        make_private_folder(folder)  # 0700: the listener's sessions and recordings
    except OSError as exc:
        raise ConfigError(f"service.state_dir {folder} cannot be created: {exc}") from exc
    log.info("state folder: %s", folder.resolve())
    sink = open_sink(config.sink, folder)
    log.info("sink: %s at %d Hz, block %d", sink.name, sink.sample_rate, sink.block_size)
    return Daemon(config, engine, sink, folder, statistics=statistics, mapping=mapping)


__all__ = ["build_daemon", "build_engine", "planning_inputs"]
