"""Training examples from MTG-Jamendo: split files, joined tags, prompts, crops and cached codes.

A track of the mood/theme split becomes one example: a seeded random crop of its audio
(resampled to the codec's rate, mono) and a prompt built exactly like a generation prompt,
``"mood, emotion, instrument, genre"``: one of its mood tags, that tag's circumplex emotion,
and one of its instrument and genre tags (joined on ``TRACK_ID`` from the instrument and genre
TSVs). Theme-only tracks carry no emotion and are left out. EnCodec codes of the crops are
computed once and cached on disk; unreadable or missing audio is skipped and counted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.audio_io import read_audio
from musicmed_stream.emotion import TagMapping, strip_tag
from musicmed_stream.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
TAGS_COLUMN = 5  # TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, then the tags


@dataclass(frozen=True)
class Track:
    """One track of a split with its tags (prefixes removed, clean-up map applied)."""

    track_id: str
    path: str
    duration: float
    moods: tuple[str, ...]
    instruments: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()


@dataclass
class SkipCounts:
    """Why tracks were left out."""

    no_mood: int = 0
    missing_audio: int = 0
    unreadable_audio: int = 0
    too_short: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.no_mood + self.missing_audio + self.unreadable_audio + self.too_short

    def to_dict(self) -> dict[str, int]:
        return {
            "no_mood": self.no_mood,
            "missing_audio": self.missing_audio,
            "unreadable_audio": self.unreadable_audio,
            "too_short": self.too_short,
        }


def _rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except OSError as exc:
        raise ConfigError(f"cannot read MTG-Jamendo file {path}: {exc.strerror or exc}") from exc
    if not rows or rows[0][:1] != ["TRACK_ID"]:
        raise ConfigError(f"{path} is not an MTG-Jamendo TSV (header 'TRACK_ID ...')")
    return rows[1:]


def _tags(row: list[str], category: str, cleanup: dict[str, str]) -> tuple[str, ...]:
    prefix = f"{category}---"
    found = [t.strip()[len(prefix) :] for t in row[TAGS_COLUMN:] if t.strip().startswith(prefix)]
    return tuple(dict.fromkeys(cleanup.get(t, t) for t in found))


def _cleanup_maps(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / "tag_map.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def split_file(jamendo_dir: str | Path, split: int, part: str) -> Path:
    """``splits/split-N/autotagging_moodtheme-{part}.tsv`` of the metadata folder."""
    if part not in PARTS:
        raise ConfigError(f"split part {part!r}: choose one of {', '.join(PARTS)}")
    path = Path(jamendo_dir) / "splits" / f"split-{split}" / f"autotagging_moodtheme-{part}.tsv"
    if not path.is_file():
        raise ConfigError(f"MTG-Jamendo split file {path} not found (check --jamendo and --split)")
    return path


def read_split(jamendo_dir: str | Path, split: int = 0, part: str = "train") -> list[Track]:
    """Tracks of one official mood/theme split part, with instrument and genre tags joined.

    Raises
    ------
    ConfigError
        If the split file or a tag TSV is missing or malformed.
    """
    root = Path(jamendo_dir)
    cleanup = _cleanup_maps(root)
    extra: dict[str, dict[str, tuple[str, ...]]] = {"instrument": {}, "genre": {}}
    for category in extra:
        tsv = root / f"autotagging_{category}.tsv"
        if not tsv.is_file():
            raise ConfigError(f"MTG-Jamendo folder {root} lacks autotagging_{category}.tsv")
        for row in _rows(tsv):
            tags = _tags(row, category, cleanup.get(category, {}))
            if tags:
                extra[category][row[0]] = tags
    tracks = []
    for row in _rows(split_file(root, split, part)):
        if len(row) <= TAGS_COLUMN:
            continue
        moods = tuple(strip_tag(t) for t in _tags(row, "mood/theme", cleanup.get("mood/theme", {})))
        try:
            duration = float(row[4])
        except ValueError:
            duration = 0.0
        tid = row[0]
        tracks.append(
            Track(tid, row[3], duration, moods, extra["instrument"].get(tid, ()), extra["genre"].get(tid, ()))
        )
    return tracks


def prompt_parts(track: Track, mapping: TagMapping, rng: random.Random) -> tuple[str, str, str, str] | None:
    """``(mood, emotion, instrument, genre)`` for a track, or ``None`` if it has no mood tag.

    One of the track's mood-kind tags (themes carry no emotion), its mapped emotion, and one of
    its instrument and genre tags (empty when it has none), drawn with ``rng``.
    """
    moods = [m for m in track.moods if (e := mapping.get(m)) is not None and e.emotion is not None]
    if not moods:
        return None
    mood = rng.choice(moods)
    emotion = mapping.get(mood).emotion.name  # type: ignore[union-attr]
    instrument = rng.choice(track.instruments) if track.instruments else ""
    genre = rng.choice(track.genres) if track.genres else ""
    return mood, emotion, instrument, genre


def format_prompt(mood: str, emotion: str, instrument: str, genre: str) -> str:
    """The generation prompt format (``Segment.prompt``); empty parts are left out."""
    return ", ".join(p for p in (mood, emotion, instrument, genre) if p)


def label_statistics(tracks: list[Track], mapping: TagMapping) -> dict[str, Any]:
    """Counts of the training labels, in ``TagStatistics`` layout plus mood and emotion totals."""
    moods: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    instruments: dict[str, Counter[str]] = {}
    genres: dict[str, Counter[str]] = {}
    for track in tracks:
        for mood in track.moods:
            entry = mapping.get(mood)
            if entry is None or entry.emotion is None:
                continue
            moods[mood] += 1
            emotions[entry.emotion.name] += 1
            instruments.setdefault(mood, Counter()).update(track.instruments)
            genres.setdefault(mood, Counter()).update(track.genres)
    return {
        "tracks": dict(sorted(moods.items())),
        "emotions": dict(sorted(emotions.items())),
        "instruments": {m: dict(c.most_common()) for m, c in sorted(instruments.items())},
        "genres": {m: dict(c.most_common()) for m, c in sorted(genres.items())},
    }


def crop_start(track_id: str, seed: int, available: int, crop: int) -> int:
    """Seeded start of a crop of ``crop`` samples in ``available`` (same for a track and seed)."""
    if available <= crop:
        return 0
    digest = hashlib.sha256(f"{seed}:{track_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (available - crop + 1)


def load_crop(path: Path, track_id: str, seed: int, seconds: float, sample_rate: int) -> np.ndarray:
    """A seeded random crop of ``seconds`` of the file, mono float32 at ``sample_rate``.

    Raises
    ------
    AudioError
        If the file cannot be read.
    """
    from musicmed_stream.chain import resample

    audio, rate = read_audio(path)
    mono = resample(audio.mean(axis=1, keepdims=True), rate, sample_rate)[:, 0]
    crop = round(seconds * sample_rate)
    start = crop_start(track_id, seed, mono.size, crop)
    return np.ascontiguousarray(mono[start : start + crop], dtype=np.float32)


@dataclass(frozen=True)
class Example:
    """A training example: the crop's EnCodec codes ``(K, frames)`` and its prompt parts."""

    track: Track
    codes: np.ndarray
    parts: tuple[str, str, str, str]


def code_cache_key(track: Track, seed: int, seconds: float, model_id: str) -> str:
    text = f"{model_id}|{track.track_id}|{track.path}|{seed}|{seconds}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def encode_examples(
    tracks: list[Track],
    audio_dir: str | Path,
    mapping: TagMapping,
    encode: Any,
    sample_rate: int,
    cache_dir: str | Path,
    model_id: str,
    seed: int = 0,
    seconds: float = 30.0,
    min_seconds: float = 1.0,
) -> tuple[list[Example], SkipCounts]:
    """Codes for every usable track, from the cache or computed once with ``encode``.

    Parameters
    ----------
    encode : callable
        ``mono float32 audio -> int codes (K, frames)`` (EnCodec).
    cache_dir : path
        ``.npy`` files of codes, keyed by model, track, crop seed and length.

    Returns
    -------
    examples, skipped
        Tracks without a mood tag, with missing, unreadable or too short audio are counted in
        ``skipped`` and left out; never fatal.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    audio_root = Path(audio_dir)
    skipped = SkipCounts()
    examples = []
    for track in tracks:
        rng = random.Random(f"{seed}:{track.track_id}")
        parts = prompt_parts(track, mapping, rng)
        if parts is None:
            skipped.no_mood += 1
            continue
        cached = cache / f"{code_cache_key(track, seed, seconds, model_id)}.npy"
        if cached.is_file():
            examples.append(Example(track, np.load(cached), parts))
            continue
        path = audio_root / track.path
        if not path.is_file():
            skipped.missing_audio += 1
            skipped.examples.append(f"{track.track_id}: missing {path}")
            continue
        try:
            crop = load_crop(path, track.track_id, seed, seconds, sample_rate)
        except AudioError as exc:
            skipped.unreadable_audio += 1
            skipped.examples.append(f"{track.track_id}: {exc}")
            continue
        if crop.size < min_seconds * sample_rate:
            skipped.too_short += 1
            continue
        codes = np.asarray(encode(crop), dtype=np.int16)
        tmp = cached.with_suffix(".part.npy")
        np.save(tmp, codes)
        tmp.replace(cached)
        examples.append(Example(track, codes, parts))
    if skipped.total:
        log.warning("skipped %d of %d tracks: %s", skipped.total, len(tracks), skipped.to_dict())
    return examples, skipped
