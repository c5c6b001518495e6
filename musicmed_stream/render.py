"""Offline render of a whole session: plan -> engine clip by clip -> audio chain -> files.

The render plays the session through the daemon's own path: each clip through
:func:`~musicmed_stream.chain.to_output`, then onto a :class:`~musicmed_stream.player.deck.Deck`
driven synchronously (crossfades, high-pass, limiter, the fade at the end), so a rendered session
and the same session played by the daemon are the same samples. The session file is written block
by block as the deck hands audio out, and clip audio is let go once it is mixed: memory does not
grow with the session's length. Every finished clip is saved atomically with its engine state and
recorded in ``manifest.json`` together with the arguments it was made with, so an interrupted render
continues from the finished clips when re-run and ends with the same bytes as an uninterrupted one.
The manifest's ``complete`` flag says the folder holds a finished render.

Folder layout::

    session.wav|flac   the finished session (24-bit PCM)
    clips/clip_000.wav raw engine output (32-bit float, exact), clips/clip_000.json its state
    plan.json  session.mid  path.png  report.md  render.json  manifest.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from musicmed_stream.audio_io import AudioWriter, read_audio, write_audio, write_text_atomic
from musicmed_stream.chain import (
    ChainConfig,
    OutputClip,
    as_frames,
    conditioning_tail,
    piece_frames,
    prepare_in_pieces,
    to_output,
)
from musicmed_stream.engines.base import Clip, Continuation, Engine, clip_seed
from musicmed_stream.errors import AudioError, MusicMedError
from musicmed_stream.jsonable import normalized, to_jsonable
from musicmed_stream.planner.types import Plan, Segment
from musicmed_stream.player.deck import Deck, Label, OfflineOutput
from musicmed_stream.render_settings import FORMATS, SAMPLE_FORMATS, RenderSettings

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SESSION_SUBTYPE = RenderSettings().sample_format
CLIP_SUBTYPE = "FLOAT"  # lossless for the engine's float32 output: a resumed clip is bit-identical


class RenderError(MusicMedError):
    """An output folder that cannot be used, or engine output that cannot be rendered."""


@dataclass(frozen=True)
class ClipRecord:
    """One finished clip, as generated or as read back from the folder."""

    index: int
    audio: np.ndarray
    sample_rate: int
    state: dict[str, Any]
    notes: list[dict[str, Any]]
    info: dict[str, Any]
    generation_s: float
    resumed: bool

    def without_audio(self) -> ClipRecord:
        """The record with its audio let go (what the report and the MIDI file need)."""
        return dataclasses.replace(self, audio=np.zeros((0, self.audio.shape[1]), np.float32))


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_session` produced.

    Attributes
    ----------
    out_dir : Path
    files : dict of str to Path
        ``session``, ``plan``, ``midi``, ``path_plot``, ``report``, ``render``, ``manifest``.
    duration_s : float
        Length of the session audio.
    sample_rate, channels : int
    clips_generated, clips_resumed : int
        Clips made in this run and clips taken over from an earlier, interrupted run.
    timings : dict of str to float
        Wall seconds: ``generate`` (engine), ``chain`` (summed over the chain's threads, which
        overlap the engine), ``write``, ``total``.
    realtime_factor : float
        Session duration over total wall time.
    peak_dbfs : float
        Largest sample of the session, dBFS.
    """

    out_dir: Path
    files: dict[str, Path]
    duration_s: float
    sample_rate: int
    channels: int
    clips_generated: int
    clips_resumed: int
    timings: dict[str, float] = field(default_factory=dict)
    realtime_factor: float = 0.0
    peak_dbfs: float = -math.inf


def render_key(
    plan: Plan, engine: Engine, chain_config: ChainConfig, audio_format: str, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """Everything the clips and the session depend on; a folder holds renders of one key only."""
    plan_dict = plan.to_dict()
    plan_dict.pop("meta", None)  # provenance notes; the segments carry all that shapes the audio
    return {
        "plan": plan_dict,
        "engine": engine.name,
        "engine_sample_rate": int(engine.sample_rate),
        "engine_channels": int(engine.channels),
        "chain": chain_config.to_dict(),
        "format": audio_format,
        "extra": extra or {},
    }


def render_session(
    plan: Plan,
    engine: Engine,
    out_dir: str | Path,
    chain_config: ChainConfig | None = None,
    *,
    audio_format: str = "wav",
    sample_format: str = "PCM_24",
    sample_rate: int | None = None,
    end_fade_s: float = 3.0,
    force: bool = False,
    arguments: dict[str, Any] | None = None,
    key_extra: dict[str, Any] | None = None,
    progress: bool = False,
    block_frames: int = 16384,
    on_clip: Callable[[ClipRecord], None] | None = None,
    chain_workers: int = 1,
    stream_first: bool = True,
) -> RenderResult:
    """Render ``plan`` with ``engine`` into ``out_dir``, continuing an interrupted render there.

    Parameters
    ----------
    plan : Plan
    engine : Engine
    out_dir : path-like
        Created if missing. A folder holding another render (other plan, engine, chain settings or
        ``key_extra``) or unrelated files is refused unless ``force``.
    chain_config : ChainConfig, optional
    audio_format : {"wav", "flac"}
        Of the session file (clips are always 32-bit float WAV).
    sample_format : {"PCM_16", "PCM_24", "FLOAT"}
        Samples of the session file: 16- or 24-bit PCM, or 32-bit float (exactly what was played;
        WAV only).
    sample_rate : int, optional
        Session rate; clips at another rate are resampled (soxr). Default: the engine's rate.
    end_fade_s : float
        The session's last clip fades out over its final seconds, as the daemon plays it
        (``playback.fade_seconds``).
    force : bool
        Discard an earlier render in ``out_dir`` and start afresh.
    arguments : dict, optional
        Recorded in ``render.json`` (e.g. the command-line arguments).
    key_extra : dict, optional
        More inputs the audio depends on (e.g. the MusicGen model and adapter), part of the key.
    progress : bool
        Show a tqdm progress bar with ETA on stderr.
    block_frames : int
        Frames the deck renders at a time; the output does not depend on it, and large blocks
        spend less time in per-block overhead offline.
    on_clip : callable, optional
        Called with each :class:`ClipRecord` once it is saved (used to test interruptions).
    chain_workers : int
        Threads preparing clips (:func:`~musicmed_stream.chain.to_output`) while the engine runs;
        numpy, scipy's FFT and filters release the GIL in the heavy parts. The output does not
        depend on it. One keeps up with the built-in engine (a clip's chain takes about two thirds
        of its generation) and holds less audio: a 15-min render peaked at 279 MiB with one, 324 MiB
        with two, in the same wall time (``benchmarks/memory.py``); MusicGen with the denoiser on
        may gain from two.
    stream_first : bool
        With a streaming engine, prepare the first clip piece by piece as the daemon does when it
        streams it (``engine.stream``, the daemon's default): the same session, the same samples.

    Raises
    ------
    RenderError
        For an unusable folder or malformed engine output.
    MusicMedError
        From the engine (e.g. missing weights) or on write errors (``AudioError``).
    """
    t_start = time.perf_counter()
    chain_config = chain_config or ChainConfig()
    if audio_format not in FORMATS:
        raise RenderError(f"unknown format {audio_format!r}; choose one of {', '.join(FORMATS)}")
    if sample_format not in SAMPLE_FORMATS or (sample_format == "FLOAT" and audio_format != "wav"):
        raise RenderError(
            f"sample format {sample_format!r}: choose one of {', '.join(SAMPLE_FORMATS)} (FLOAT in WAV only)"
        )
    if not plan.segments:
        raise RenderError("the plan has no segments")
    out = Path(out_dir)
    key = render_key(plan, engine, chain_config, audio_format, key_extra)
    key |= {"end_fade_s": end_fade_s, "sample_format": sample_format}
    manifest = _open_folder(out, key, force)
    paths = _output_paths(out, audio_format)
    write_text_atomic(paths["plan"], plan.to_json() + "\n")
    rate = int(sample_rate or engine.sample_rate)
    player = _Player(
        paths["session"], rate, int(engine.channels), chain_config, block_frames, end_fade_s, sample_format
    )
    player.clip_config = chain_config.for_engine(engine)
    # The daemon plays a program's first clip as a streaming engine hands it over, prepared piece
    # by piece: so does the render, and both give the same samples.
    player.first_pieces = piece_frames(engine) if stream_first else None
    timings = {"generate": 0.0, "chain": 0.0, "write": 0.0}
    records: list[ClipRecord] = []
    previous: Continuation | None = None
    last = plan.segments[-1].index
    bar = tqdm(total=len(plan.segments), unit="clip", file=sys.stderr, disable=not progress, desc="render")
    # Clip preparation is pure, so it runs on a pool while the engine makes the next clips; the
    # deck takes the prepared clips strictly in clip order on its own thread, so the output does
    # not depend on the timing.
    with (
        player,
        bar,
        ThreadPoolExecutor(max_workers=max(1, chain_workers), thread_name_prefix="chain") as prepare_pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="mix") as mix_thread,
    ):
        mixed: list[Future[None]] = []
        for segment in plan.segments:
            # Once one clip is made afresh, every later clip is made afresh too.
            resumable = all(r.resumed for r in records)
            record = _load_clip(out, manifest, segment.index) if resumable else None
            if record is None:
                record = _generate_clip(engine, plan, segment, previous, timings)
                t0 = time.perf_counter()
                _save_clip(out, manifest, record)
                timings["write"] += time.perf_counter() - t0
            if on_clip is not None:
                on_clip(record)
            prepared = prepare_pool.submit(player.prepare, record, segment.index == plan.segments[0].index)
            mixed.append(mix_thread.submit(player.mix, record, prepared, segment.index == last))
            previous = Continuation(
                tail=conditioning_tail(record.audio, record.sample_rate, chain_config),
                sample_rate=record.sample_rate,
                state=record.state,
            )
            records.append(record.without_audio())  # the audio lives on in the deck and the file
            _raise_chain_errors(mixed)
            # Back-pressure: an engine faster than the chain would queue every clip's audio up.
            if len(mixed) > chain_workers + 1:
                mixed[-chain_workers - 2].result()
            bar.set_postfix_str(f"{segment.emotion} ({'resumed' if record.resumed else 'generated'})")
            bar.update(1)
        # The plot depends on the plan only: draw it while the chain catches up with the engine.
        t0 = time.perf_counter()
        _write_plot(paths["path_plot"], plan)
        timings["write"] += time.perf_counter() - t0
        for future in mixed:
            future.result()
        player.close()
    timings["chain"] = player.seconds
    return _write_session(plan, engine, records, player, paths, manifest, timings, t_start, arguments)


def render_clips(
    clips: list[np.ndarray],
    sample_rate: int,
    config: ChainConfig | None = None,
    *,
    end_fade_s: float = 0.0,
    block_frames: int = 16384,
) -> np.ndarray:
    """Play raw clips (all at ``sample_rate``, one channel count) through the render's path, in
    memory: :func:`~musicmed_stream.chain.to_output`, then the deck (crossfades, high-pass, limiter,
    ``end_fade_s`` at the end). float32 ``(frames, channels)``; for tests and benchmarks."""
    config = config or ChainConfig()
    channels = as_frames(clips[0]).shape[1]
    deck = Deck(sample_rate, channels, config, block_size=block_frames)
    deck.begin()
    output = OfflineOutput(deck, block_frames, end_fade_s)
    blocks: list[np.ndarray] = []
    for n, clip in enumerate(clips):
        deck.append(to_output(clip, sample_rate, sample_rate, channels, config).audio, Label("clip", n))
        if n == len(clips) - 1:
            deck.finish(end_fade_s)
        blocks += output.ready()
    blocks += output.rest()
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)


class _Player:
    """Prepares clips (any thread) and plays them on a deck (one thread, in clip order) into the
    session file, block by block."""

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        channels: int,
        config: ChainConfig,
        block_frames: int,
        end_fade_s: float,
        sample_format: str = SESSION_SUBTYPE,
    ) -> None:
        self.sample_rate, self.channels, self.config = sample_rate, channels, config
        self.end_fade_s = end_fade_s
        self.deck = Deck(sample_rate, channels, config, block_size=block_frames)
        self.deck.begin()
        self.output = OfflineOutput(self.deck, block_frames, end_fade_s)
        self.writer = AudioWriter(path, sample_rate, channels, subtype=sample_format)
        self.midi_parts: list[tuple[float, list[dict[str, Any]]]] = []
        self.seconds = 0.0  # summed over the chain's threads
        self.first_pieces: int | None = None  # streamed first clip: its pieces' frames
        self.clip_config = config  # the clip-level chain for this engine's clips
        self._lock = threading.Lock()

    def prepare(self, record: ClipRecord, first: bool = False) -> OutputClip:
        """The clip-level chain (pure, any thread)."""
        t0 = time.perf_counter()
        output = (record.audio, record.sample_rate, self.sample_rate, self.channels, self.clip_config)
        if first and self.first_pieces:
            prepared = prepare_in_pieces(*output, self.first_pieces)
        else:
            prepared = to_output(*output)
        self._add_seconds(time.perf_counter() - t0)
        return prepared

    def mix(self, record: ClipRecord, prepared: Future[OutputClip], last: bool) -> None:
        """Play one prepared clip on the deck and write what became final; call in clip order
        from one thread."""
        clip = prepared.result()
        t0 = time.perf_counter()
        start = self.deck.append(clip.audio, Label("clip", record.index))
        self.midi_parts.append(((start - clip.lead_frames) / self.sample_rate, record.notes))
        if last:
            self.deck.finish(self.end_fade_s)
        for block in self.output.ready():
            self.writer.write(block)
        self._add_seconds(time.perf_counter() - t0)

    def close(self) -> None:
        """Write the session's end; the file is committed by :meth:`commit`."""
        t0 = time.perf_counter()
        for block in self.output.rest():
            self.writer.write(block)
        self._add_seconds(time.perf_counter() - t0)
        if self.writer.frames == 0 or self.writer.peak == 0.0:
            raise RenderError("the engine produced only silence; nothing to render")

    def _add_seconds(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds

    def __enter__(self) -> _Player:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None:
            self.writer.abort()


def _generate_clip(
    engine: Engine, plan: Plan, segment: Segment, previous: Continuation | None, timings: dict[str, float]
) -> ClipRecord:
    t0 = time.perf_counter()
    clip = engine.generate(segment, previous, seed=clip_seed(plan.settings.seed, segment.index))
    elapsed = time.perf_counter() - t0
    timings["generate"] += elapsed
    return _check_clip(clip, segment.index, engine, elapsed)


def _raise_chain_errors(chained: list[Future[None]]) -> None:
    """Re-raise at once an error of a finished chain task (instead of after the whole session)."""
    for future in chained:
        if future.done() and future.exception() is not None:
            future.result()


def _write_session(
    plan: Plan,
    engine: Engine,
    records: list[ClipRecord],
    player: _Player,
    paths: dict[str, Path],
    manifest: dict[str, Any],
    timings: dict[str, float],
    t_start: float,
    arguments: dict[str, Any] | None,
) -> RenderResult:
    """Side files, then the session audio under its name, then the manifest's completion mark."""
    t0 = time.perf_counter()
    rate = player.sample_rate
    duration = player.writer.frames / rate
    peak = player.writer.peak
    peak_dbfs = 20.0 * math.log10(peak) if peak > 0 else -math.inf
    _write_midi(paths["midi"], player.midi_parts, records)
    timings["write"] += time.perf_counter() - t0
    resumed = sum(r.resumed for r in records)
    timings["total"] = time.perf_counter() - t_start
    summary = {
        "arguments": arguments or {},
        "engine": engine.name,
        "sample_rate": rate,
        "channels": player.channels,
        "format": paths["session"].suffix.lstrip("."),
        "chain": player.config.to_dict(),
        "end_fade_s": player.end_fade_s,
        "clips": len(records),
        "clips_generated": len(records) - resumed,
        "clips_resumed": resumed,
        "duration_s": duration,
        "peak_dbfs": peak_dbfs,
        "timings_s": timings,
        "realtime_factor": duration / timings["total"] if timings["total"] > 0 else math.inf,
        "generation_s": [r.generation_s for r in records],
    }
    write_text_atomic(paths["report"], format_report(plan, records, summary))
    write_text_atomic(paths["render"], json.dumps(to_jsonable(summary), indent=2) + "\n")
    player.writer.commit()  # last: the finished product
    manifest["complete"] = True
    _write_manifest(paths["manifest"].parent, manifest)
    timings["total"] = time.perf_counter() - t_start
    return RenderResult(
        out_dir=paths["manifest"].parent,
        files=paths,
        duration_s=duration,
        sample_rate=rate,
        channels=player.channels,
        clips_generated=len(records) - resumed,
        clips_resumed=resumed,
        timings=timings,
        realtime_factor=summary["realtime_factor"],
        peak_dbfs=peak_dbfs,
    )


def format_report(plan: Plan, records: list[ClipRecord], summary: dict[str, Any]) -> str:
    """``report.md``: the session at a glance and one table row per segment."""
    timings = summary["timings_s"]
    lines = [
        f"# Session: {plan.start_label or 'start'} -> {plan.target_label or 'target'}",
        "",
        f"- start (V, A): ({plan.start.valence:+.2f}, {plan.start.arousal:+.2f}); "
        f"target: ({plan.target.valence:+.2f}, {plan.target.arousal:+.2f})",
        f"- path {plan.settings.path}, {len(plan.segments)} clips of {plan.settings.clip_seconds:g} s, "
        f"temperature {plan.settings.temperature:g}, seed {plan.settings.seed}",
        f"- never drawn: genres {', '.join(plan.settings.exclude_genres) or 'none'}; "
        f"instruments {', '.join(plan.settings.exclude_instruments) or 'none'}",
        f"- engine {summary['engine']}, {summary['sample_rate']} Hz, {summary['channels']} channel(s)",
        f"- session {summary['duration_s']:.1f} s, peak {summary['peak_dbfs']:.2f} dBFS, "
        f"target loudness {summary['chain']['target_lufs']:g} LUFS, "
        f"ceiling {summary['chain']['ceiling_dbtp']:g} dBTP",
        f"- wall time {timings['total']:.2f} s (engine {timings['generate']:.2f} s, chain "
        f"{timings['chain']:.2f} s, files {timings['write']:.2f} s): "
        f"{summary['realtime_factor']:.1f}x real time; {summary['clips_resumed']} clip(s) resumed",
        "",
        "| # | time | V | A | emotion | prompt | generation s |",
        "|---:|---:|---:|---:|---|---|---:|",
    ]
    for segment, record in zip(plan.segments, records, strict=True):
        minutes, seconds = divmod(segment.start_s, 60)
        lines.append(
            f"| {segment.index} | {int(minutes)}:{seconds:04.1f} | {segment.valence:+.2f} | "
            f"{segment.arousal:+.2f} | {segment.emotion} | {segment.prompt} | {record.generation_s:.2f} |"
        )
    return "\n".join(lines) + "\n"


# --- folder and manifest ----------------------------------------------------------------------


def _output_paths(out: Path, audio_format: str) -> dict[str, Path]:
    return {
        "session": out / f"session.{audio_format}",
        "plan": out / "plan.json",
        "midi": out / "session.mid",
        "path_plot": out / "path.png",
        "report": out / "report.md",
        "render": out / "render.json",
        "manifest": out / MANIFEST,
    }


def _clip_paths(out: Path, index: int) -> tuple[Path, Path]:
    return out / "clips" / f"clip_{index:03d}.wav", out / "clips" / f"clip_{index:03d}.json"


def _open_folder(out: Path, key: dict[str, Any], force: bool) -> dict[str, Any]:
    """Create or reopen ``out``; returns the manifest to continue (a fresh one if none fits)."""
    if out.exists() and not out.is_dir():
        raise RenderError(f"output path {out} exists and is not a folder")
    try:
        (out / "clips").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot create output folder {out}: {exc.strerror or exc}") from exc
    fresh = {"version": MANIFEST_VERSION, "key": key, "complete": False, "clips": {}}
    manifest_path = out / MANIFEST
    old: dict[str, Any] | None = None
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
    if not force:
        if old is not None and old.get("version") == MANIFEST_VERSION and old.get("key") == normalized(key):
            old["complete"] = False
            _write_manifest(out, old)
            return old
        if old is not None:
            old_key = old.get("key") if isinstance(old.get("key"), dict) else {}
            differs = sorted(k for k, v in normalized(key).items() if v != old_key.get(k))
            raise RenderError(
                f"output folder {out} holds a render made with other arguments "
                f"(differs in: {', '.join(differs) or 'manifest version'}); use --force to replace it "
                "or choose another --out"
            )
        others = [p.name for p in out.iterdir() if p.name != "clips"] + [
            f"clips/{p.name}" for p in (out / "clips").iterdir()
        ]
        if others:
            raise RenderError(
                f"output folder {out} is not empty and holds no render manifest ({others[0]}, ...); "
                "use --force to render into it anyway or choose another --out"
            )
    elif old is not None:
        for index in old.get("clips", {}):
            for path in _clip_paths(out, int(index)):
                path.unlink(missing_ok=True)
    try:
        _write_manifest(out, fresh)
    except OSError as exc:
        raise RenderError(f"cannot write to output folder {out}: {exc.strerror or exc}") from exc
    return fresh


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_text_atomic(out / MANIFEST, json.dumps(to_jsonable(manifest), indent=1) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_clip(out: Path, manifest: dict[str, Any], record: ClipRecord) -> None:
    """Write the clip and its state atomically, then record both in the manifest."""
    audio_path, state_path = _clip_paths(out, record.index)
    write_audio(audio_path, record.audio, record.sample_rate, subtype=CLIP_SUBTYPE)
    meta = {
        "index": record.index,
        "sample_rate": record.sample_rate,
        "frames": int(record.audio.shape[0]),
        "generation_s": record.generation_s,
        "state": record.state,
        "notes": record.notes,
        "info": record.info,
    }
    try:
        write_text_atomic(state_path, json.dumps(to_jsonable(meta)) + "\n")
    except OSError as exc:
        raise AudioError(f"cannot write {state_path}: {exc.strerror or exc}") from exc
    manifest["clips"][str(record.index)] = {
        "audio": audio_path.name,
        "audio_sha256": _sha256(audio_path),
        "state": state_path.name,
        "state_sha256": _sha256(state_path),
    }
    _write_manifest(out, manifest)


def _load_clip(out: Path, manifest: dict[str, Any], index: int) -> ClipRecord | None:
    """The finished clip ``index`` from an earlier run, or None if it is missing or damaged."""
    entry = manifest["clips"].get(str(index))
    if entry is None:
        return None
    audio_path, state_path = _clip_paths(out, index)
    try:
        if _sha256(audio_path) != entry["audio_sha256"] or _sha256(state_path) != entry["state_sha256"]:
            return None
        audio, rate = read_audio(audio_path)
        meta = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, AudioError):
        return None
    return ClipRecord(
        index=index,
        audio=audio,
        sample_rate=rate,
        state=meta.get("state", {}),
        notes=meta.get("notes", []),
        info=meta.get("info", {}),
        generation_s=float(meta.get("generation_s", 0.0)),
        resumed=True,
    )


def _check_clip(clip: Clip, index: int, engine: Engine, elapsed: float) -> ClipRecord:
    """Validate engine output and make it JSON-safe; the state must survive a JSON round trip."""
    try:
        audio = as_frames(clip.audio)
    except AudioError as exc:
        raise RenderError(f"engine {engine.name} returned bad audio for clip {index}: {exc}") from exc
    if audio.shape[0] == 0:
        raise RenderError(f"engine {engine.name} returned an empty clip {index}")
    if audio.shape[1] != engine.channels:
        raise RenderError(
            f"engine {engine.name} returned {audio.shape[1]} channels for clip {index}, "
            f"declared {engine.channels}"
        )
    try:
        state = json.loads(json.dumps(to_jsonable(clip.state)))
        notes = json.loads(json.dumps(to_jsonable(clip.notes)))
        info = json.loads(json.dumps(to_jsonable(clip.info)))
    except (TypeError, ValueError) as exc:
        raise RenderError(f"engine {engine.name} returned a state that is not JSON: {exc}") from exc
    return ClipRecord(index, audio, int(clip.sample_rate), state, notes, info, elapsed, resumed=False)


# --- side files -------------------------------------------------------------------------------


def _write_midi(
    path: Path, parts: list[tuple[float, list[dict[str, Any]]]], records: list[ClipRecord]
) -> None:
    from musicmed_stream.engines.midi import write_session_midi

    tempo = next((r.info.get("tempo_bpm") for r in records if r.info.get("tempo_bpm")), None)
    write_session_midi(path, parts, tempo_bpm=tempo)


def _write_plot(path: Path, plan: Plan) -> None:
    from musicmed_stream.emotion.plot import plot_circumplex

    title = f"Planned path: {plan.start_label or 'start'} -> {plan.target_label or 'target'}"
    plot_circumplex([("planned", [s.va for s in plan.segments])], path, title=title)
