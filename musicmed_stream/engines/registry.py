"""Create an engine by name: ``builtin``, ``musicgen``, ``remote`` or ``auto``.

``auto`` picks MusicGen when it can serve (its libraries import and its weights are on this
machine) and the built-in engine otherwise, saying why.
"""

from __future__ import annotations

import logging
from typing import Any

from musicmed_stream.engines.base import Engine
from musicmed_stream.errors import ConfigError

log = logging.getLogger(__name__)

ENGINE_NAMES = ("auto", "builtin", "musicgen", "remote")


def create_engine(
    name: str,
    builtin: dict[str, Any] | None = None,
    musicgen: dict[str, Any] | None = None,
    remote: dict[str, Any] | None = None,
) -> Engine:
    """Build the engine ``name`` with its own options (keyword arguments of its constructor)."""
    builtin = builtin or {}
    musicgen = musicgen or {}
    if name == "remote":
        from musicmed_stream.engines.remote import RemoteEngine

        return RemoteEngine(**(remote or {}))
    if name not in ENGINE_NAMES:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    if name == "auto":
        from musicmed_stream.engines.musicgen import musicgen_unavailable_reason

        reason = musicgen_unavailable_reason(**musicgen)
        if reason is None:
            name = "musicgen"
        else:
            log.info("engine auto: using the built-in engine because %s", reason)
            name = "builtin"
    if name == "musicgen":
        from musicmed_stream.engines.musicgen import MusicgenEngine

        return MusicgenEngine(**musicgen)
    from musicmed_stream.engines.builtin import BuiltinEngine

    return BuiltinEngine(**builtin)
