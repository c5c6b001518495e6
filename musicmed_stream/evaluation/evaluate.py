"""Evaluate one session: every metric family, ``metrics.json`` and a report with plots."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import ConfigError
from musicmed_stream.evaluation import backends, recognition
from musicmed_stream.evaluation.adherence import path_adherence
from musicmed_stream.evaluation.clap import ClapScorer, clap_score
from musicmed_stream.evaluation.comfort import comfort_report
from musicmed_stream.evaluation.compare import listening_figures
from musicmed_stream.evaluation.features import estimate_va, extract_features
from musicmed_stream.evaluation.report import write_report
from musicmed_stream.evaluation.run import HISTORY_FILE, Run, load_run
from musicmed_stream.evaluation.speed import speed_metrics

METRICS_FILE = "metrics.json"
REPORT_FORMATS = ("md", "html")


@dataclass(frozen=True)
class EvaluationOptions:
    """What to compute.

    Attributes
    ----------
    clap : str, optional
        CLAP model folder or cached Hub id; no CLAP score without it.
    mer : str
        Mood-recognition backend spec (``features``, ``clap``, ``essentia:PATH``).
    top_k : int
        Tags predicted per clip for the Hamming score.
    threshold : float, optional
        Predict every tag scoring at least this instead of the top k.
    report_format : str
        ``md`` or ``html``.
    device : str
        torch device of the CLAP model.
    """

    clap: str | None = None
    mer: str = "features"
    top_k: int = 1
    threshold: float | None = None
    report_format: str = "md"
    device: str = "cpu"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _clean(obj: Any) -> Any:
    """JSON-safe: non-finite floats become ``null``, numpy scalars plain numbers, tuples lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return _finite(obj)
    return obj


def mood_tag_points() -> dict[str, VA]:
    """Circumplex point of every mood-kind MTG-Jamendo tag (the built-in tag mapping)."""
    from musicmed_stream.emotion import load_tag_mapping

    mapping = load_tag_mapping()
    return {e.tag: mapping.va(e.tag) for e in mapping.mood_entries}


def _recognition(
    run: Run,
    options: EvaluationOptions,
    measured: list[VA],
    scorer: ClapScorer | None,
    windows: list | None,
    essentia: backends.EssentiaMoodTheme | None,
) -> dict[str, Any]:
    name, _ = backends.parse_mer(options.mer)
    tag_points = mood_tag_points()
    tags = list(tag_points)
    unknown = sorted({c.mood for c in run.clips if c.mood not in tag_points})
    if unknown:
        return {
            "backend": options.mer,
            "skipped": f"intended tags not among the mood tags: {', '.join(unknown)}",
        }
    if name == "features":
        scores = backends.features_tag_scores(measured, tag_points)
    elif name == "clap" and scorer is not None and windows is not None:
        scores = backends.clap_tag_scores(windows, backends.clap_text_embeddings(scorer, tags))
    elif essentia is not None:
        scores = np.stack([essentia.tag_scores(c.audio, c.sample_rate, tags) for c in run.clips])
    else:
        raise ConfigError(f"mood backend {options.mer!r} is not loaded")
    truth = recognition.one_hot([c.mood for c in run.clips], tags)
    predicted = recognition.predict(scores, top_k=options.top_k, threshold=options.threshold)
    return {
        "backend": options.mer,
        "tags": tags,
        "prediction": f"score >= {options.threshold}"
        if options.threshold is not None
        else f"top-{options.top_k}",
        "auprc": recognition.auprc_macro(truth, scores),
        "hamming": recognition.hamming_score(truth, predicted),
        "predicted": [[tags[i] for i in np.flatnonzero(row)] for row in predicted],
        "scores": scores.tolist(),
    }


def evaluate_run(
    folder: str | Path,
    options: EvaluationOptions = EvaluationOptions(),
    out_dir: str | Path | None = None,
    session: str | None = None,
) -> dict[str, Any]:
    """Evaluate the run in ``folder``; write ``metrics.json`` and the report into ``out_dir`` (default:
    ``folder``; for a daemon state folder ``folder/evaluations/SESSION_ID``, one per session).

    ``session``: in a daemon state folder, the session to evaluate (an id or the unique beginning
    of one); default the last. Returns the metrics as written.
    """
    if options.report_format not in REPORT_FORMATS:
        raise ConfigError(f"unknown report format {options.report_format!r}; choose md or html")
    # Every input and model is checked before the (slow) analysis starts.
    mer_name, mer_path = backends.parse_mer(options.mer)
    if mer_name == "clap" and not options.clap:
        raise ConfigError("--mer clap needs a CLAP model: pass --clap ID_OR_DIR")
    run = load_run(folder, session)
    scorer = ClapScorer(options.clap, device=options.device) if options.clap else None
    essentia = backends.EssentiaMoodTheme(mer_path or "") if mer_name == "essentia" else None
    out = Path(out_dir) if out_dir is not None else output_folder(run)
    out.mkdir(parents=True, exist_ok=True)

    features = [extract_features(c.audio, c.sample_rate) for c in run.clips]
    measured = [estimate_va(f) for f in features]
    planned = [c.planned for c in run.clips]
    windows, clap_scores = None, None
    if scorer is not None:
        windows = [scorer.clip_embedding_windows(c.audio, c.sample_rate) for c in run.clips]
        prompts = scorer.text_embeddings([c.prompt for c in run.clips])
        clap_scores = [clap_score(w, p).score for w, p in zip(windows, prompts, strict=True)]
    comfort, short_term = comfort_report(
        run.session, run.sample_rate, [(c.start_s, c.end_s) for c in run.clips]
    )
    audio_s = run.session.shape[0] / run.sample_rate
    metrics: dict[str, Any] = {
        "run": {
            "folder": str(run.folder),
            "output": str(out),
            "kind": run.kind,
            "clips": len(run.clips),
            "duration_s": audio_s,
            "session_offset_s": run.offset_s,
            "session_id": run.session_id,
            "recording": None if run.recording is None else str(run.recording),
            "engine": _engine_name(run.render_info),
            "parameters": _engine_parameters(run.render_info),
        },
        "clap": None
        if clap_scores is None
        else {
            "model": scorer.name,
            "parameters": scorer.parameters,
            "mean": float(np.mean(clap_scores)),
            "sd": float(np.std(clap_scores, ddof=1)) if len(clap_scores) > 1 else 0.0,
            "scores": clap_scores,
        },
        "recognition": _recognition(run, options, measured, scorer, windows, essentia),
        "adherence": path_adherence(planned, measured).to_dict(),
        "comfort": comfort.to_dict(),
        "speed": speed_metrics(run.render_info, audio_s),
        "clips": [
            {
                "index": c.index,
                "start_s": c.start_s,
                "end_s": c.end_s,
                "mood": c.mood,
                "prompt": c.prompt,
                "planned": {"valence": c.planned.valence, "arousal": c.planned.arousal},
                "measured": {"valence": m.valence, "arousal": m.arousal},
                "features": f.to_dict(),
                "clap": None if clap_scores is None else clap_scores[i],
            }
            for i, (c, m, f) in enumerate(zip(run.clips, measured, features, strict=True))
        ],
    }
    metrics["table"] = table_row(metrics)
    metrics = _clean(metrics)
    write_report(metrics, short_term, out, options.report_format)
    write_text_atomic(out / METRICS_FILE, json.dumps(metrics, indent=2))
    return metrics


def output_folder(run: Run) -> Path:
    """Where the report goes by default: the run folder, or for a session of a daemon state folder
    (with its listening history) ``evaluations/SESSION_ID`` in it, so sessions do not overwrite
    each other's reports."""
    if run.session_id is not None and (run.folder / HISTORY_FILE).is_file():
        return run.folder / "evaluations" / run.session_id
    return run.folder


def _engine_name(info: dict[str, Any]) -> str | None:
    engine = info.get("engine")
    if isinstance(engine, dict):
        return engine.get("name")
    return engine if isinstance(engine, str) else None


def _engine_parameters(info: dict[str, Any]) -> int | None:
    """Learned parameters of the generator: ``render.json``'s ``parameters`` (top level or under
    ``engine``) when recorded; 0 for the built-in engine, a rule-based composer; else unknown."""
    engine = info.get("engine")
    for source in (info, engine if isinstance(engine, dict) else {}):
        value = source.get("parameters")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0 if _engine_name(info) == "builtin" else None


def table_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures ``compare`` reads: Table 1's, then path adherence and listening comfort."""
    rec = metrics.get("recognition") or {}
    clap = metrics.get("clap") or {}
    return listening_figures(metrics) | {
        "clap": clap.get("mean"),
        "clap_sd": clap.get("sd"),
        "clap_model": clap.get("model"),
        "auprc": rec.get("auprc"),
        "hamming": rec.get("hamming"),
        "mer": rec.get("backend"),
        "minutes_per_15min_session": (metrics.get("speed") or {}).get("minutes_per_15min_session"),
        "parameters": (metrics.get("run") or {}).get("parameters"),
    }
