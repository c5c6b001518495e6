"""Generation speed from a render's ``render.json``: seconds, real-time factor, minutes per 15-min session.

``render.json`` (written by :func:`musicmed_stream.render.render_session`) records ``duration_s``
(session audio), ``timings_s`` (wall seconds of this run: ``generate``, ``chain``, ``write``,
``total``), ``realtime_factor`` (duration over ``total``), ``generation_s`` (the engine's seconds per
clip, kept for clips resumed from an interrupted run too) and ``clips_resumed``.
"""

from __future__ import annotations

import math
from typing import Any

SESSION_MINUTES = 15.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def speed_metrics(render_info: dict[str, Any], audio_seconds: float) -> dict[str, Any]:
    """Speed figures of a render; all ``None`` when there is no render log (a daemon recording).

    ``real_time_factor`` is end to end (engine, chain and writing: what a user waits for) and
    ``minutes_per_15min_session`` is ``15 / real_time_factor``. A resumed render's wall time covers
    only the clips made in its last run, so for it both fall back to the engine's own seconds
    (``basis`` says which). ``engine_real_time_factor`` is always the engine's alone.
    """
    timings = render_info.get("timings_s") if isinstance(render_info.get("timings_s"), dict) else {}
    per_clip = render_info.get("generation_s")
    engine_s = sum(x for x in map(_number, per_clip) if x is not None) if isinstance(per_clip, list) else None
    audio = _number(render_info.get("duration_s")) or audio_seconds
    total_s = _number(timings.get("total"))
    resumed = int(render_info.get("clips_resumed") or 0)
    engine_rtf = audio / engine_s if engine_s else None
    if total_s and not resumed:
        basis, rtf = "total", _number(render_info.get("realtime_factor")) or audio / total_s
    elif engine_rtf is not None:
        basis, rtf = "engine", engine_rtf
    else:
        basis, rtf = None, None
    return {
        "audio_s": audio,
        "total_s": total_s,
        "engine_s": engine_s,
        "clips_resumed": resumed,
        "basis": basis,
        "real_time_factor": rtf,
        "engine_real_time_factor": engine_rtf,
        "minutes_per_15min_session": SESSION_MINUTES / rtf if rtf else None,
    }
