"""MusicGen engine (transformers + peft LoRA), importable without torch.

``MusicgenEngine`` and ``load_musicgen`` import torch and transformers only when used, so
``create_engine("auto")`` can ask :func:`musicgen_unavailable_reason` whether MusicGen can serve
on a machine without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from musicmed_stream.engines.musicgen.loading import (
    ADAPTER_META,
    DEFAULT_MODEL,
    AdapterInfo,
    MissingDependencyError,
    load_adapter_info,
    musicgen_unavailable_reason,
)

if TYPE_CHECKING:
    from musicmed_stream.engines.musicgen.engine import MusicgenEngine

__all__ = [
    "ADAPTER_META",
    "DEFAULT_MODEL",
    "AdapterInfo",
    "MissingDependencyError",
    "MusicgenEngine",
    "load_adapter_info",
    "musicgen_unavailable_reason",
]


def __getattr__(name: str) -> Any:
    if name == "MusicgenEngine":
        from musicmed_stream.engines.musicgen.loading import require_libraries

        require_libraries()
        from musicmed_stream.engines.musicgen.engine import MusicgenEngine

        return MusicgenEngine
    raise AttributeError(name)
