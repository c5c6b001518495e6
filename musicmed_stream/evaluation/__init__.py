"""Evaluation of sessions: CLAP score, mood recognition (AUPRC, Hamming), path adherence,
listening comfort and speed; ``evaluate_run`` writes ``metrics.json`` and a report."""

from musicmed_stream.evaluation.adherence import Adherence, path_adherence, quadrant
from musicmed_stream.evaluation.clap import ClapScore, ClapScorer, window_starts
from musicmed_stream.evaluation.comfort import (
    ComfortReport,
    comfort_report,
    detect_clicks,
    integrated_loudness,
    loudness_range,
    loudness_steps,
    short_term_loudness,
    true_peak_dbtp,
)
from musicmed_stream.evaluation.evaluate import EvaluationOptions, evaluate_run
from musicmed_stream.evaluation.features import AcousticFeatures, estimate_va, extract_features
from musicmed_stream.evaluation.recognition import auprc_macro, hamming_score, one_hot, predict
from musicmed_stream.evaluation.run import ClipRecord, Run, RunError, load_run

__all__ = [
    "AcousticFeatures",
    "Adherence",
    "ClapScore",
    "ClapScorer",
    "ClipRecord",
    "ComfortReport",
    "EvaluationOptions",
    "Run",
    "RunError",
    "auprc_macro",
    "comfort_report",
    "detect_clicks",
    "estimate_va",
    "evaluate_run",
    "extract_features",
    "hamming_score",
    "integrated_loudness",
    "load_run",
    "loudness_range",
    "loudness_steps",
    "one_hot",
    "path_adherence",
    "predict",
    "quadrant",
    "short_term_loudness",
    "true_peak_dbtp",
    "window_starts",
]
