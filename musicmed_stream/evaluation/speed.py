"""Generation speed from a render's ``render.json``: seconds, real-time factor, minutes per 15-min session."""

from __future__ import annotations

from typing import Any

SESSION_MINUTES = 15.0
_GENERATION_KEYS = (
    "generation_s",
    "generation_seconds",
    "engine_s",
    "total_s",
    "elapsed_s",
    "wall_s",
    "seconds",
)
_AUDIO_KEYS = ("audio_s", "audio_seconds", "session_s", "duration_s")


def _find_number(data: Any, keys: tuple[str, ...]) -> float | None:
    """First value under one of ``keys`` (in key order), searching nested dicts breadth first."""
    queue = [data]
    while queue:
        level, queue = queue, []
        for node in level:
            if not isinstance(node, dict):
                continue
            for key in keys:
                if isinstance(node.get(key), int | float) and not isinstance(node.get(key), bool):
                    return float(node[key])
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return None


def speed_metrics(render_info: dict[str, Any], audio_seconds: float) -> dict[str, float | None]:
    """Generation time, real-time factor (audio seconds per compute second) and minutes per 15-min session.

    The generation time is read from ``render.json`` (``timings`` or top level); the real-time
    factor is taken from it when recorded and otherwise derived. All ``None`` when unknown.
    """
    generation = _find_number(render_info, _GENERATION_KEYS)
    audio = _find_number(render_info, _AUDIO_KEYS) or audio_seconds
    rtf = _find_number(render_info, ("real_time_factor", "rtf"))
    if rtf is None and generation and audio:
        rtf = audio / generation
    minutes = SESSION_MINUTES / rtf if rtf else None
    return {
        "generation_s": generation,
        "audio_s": audio,
        "real_time_factor": rtf,
        "minutes_per_15min_session": minutes,
    }
