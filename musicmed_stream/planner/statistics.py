"""Which instruments and genres go with each mood tag, counted from MTG-Jamendo metadata.

The dataset's TSVs (``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS...``, tags like
``instrument---piano``) are joined on ``TRACK_ID``: every mood/theme tag of a track counts each of
that track's instrument and genre tags once. ``tag_map.json``, the dataset's own clean-up of
spelling variants (``synth`` -> ``synthesizer``), is applied when present.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from musicmed_stream.emotion.vocabulary import data_path, file_stamp, read_json
from musicmed_stream.errors import ConfigError

MOOD_FILE = "autotagging_moodtheme.tsv"
INSTRUMENT_FILE = "autotagging_instrument.tsv"
GENRE_FILE = "autotagging_genre.tsv"
TAG_MAP_FILE = "tag_map.json"
TAGS_COLUMN = 5  # TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, then the tags


class StatisticsError(ConfigError):
    """A metadata folder or palette file that is missing or malformed."""


# The genre and instrument tags of MTG-Jamendo's ``autotagging_genre.tsv`` and
# ``autotagging_instrument.tsv`` (after the dataset's clean-up map): the names the clinical palette's
# exclusion lists may use, with or without the metadata folder at hand.
_GENRE_TAGS = """
    60s 70s 80s 90s acidjazz alternative alternativerock ambient atmospheric blues bluesrock bossanova
    breakbeat celtic chanson chillout choir classical classicrock club contemporary country dance
    darkambient darkwave deephouse disco downtempo drumnbass dub dubstep easylistening edm electronic
    electronica electropop ethno eurodance experimental folk funk fusion groove grunge hard hardrock
    hiphop house idm improvisation indie industrial instrumentalpop instrumentalrock jazz jazzfusion
    latin lounge medieval metal minimal newage newwave orchestral pop popfolk poprock postrock
    progressive psychedelic punkrock rap reggae rnb rock rocknroll singersongwriter soul soundtrack
    swing symphonic synthpop techno trance triphop world worldfusion
"""
_INSTRUMENT_TAGS = """
    accordion acousticbassguitar acousticguitar bass beat bell bongo brass cello clarinet
    classicalguitar computer doublebass drummachine drums electricguitar electricpiano flute guitar
    harmonica harp horn keyboard oboe orchestra organ pad percussion piano pipeorgan rhodes sampler
    saxophone strings synthesizer trombone trumpet ukulele viola violin voice
"""
JAMENDO_GENRES = frozenset(_GENRE_TAGS.split())
JAMENDO_INSTRUMENTS = frozenset(_INSTRUMENT_TAGS.split())
# Spelling variants of ``tag_map.json`` that an exclusion list may also use (``punk`` -> ``punkrock``).
TAG_ALIASES: dict[str, dict[str, str]] = {
    "genre": {
        "punk": "punkrock",
        "eletronica": "electronica",
        "soundtracks": "soundtrack",
        "electronical": "electronic",
        "electronik": "electronic",
        "electronicmusic": "electronic",
        "rockpop": "poprock",
        "rockandroll": "rocknroll",
        "ambiente": "ambient",
        "ambiant": "ambient",
        "popelectro": "electropop",
        "houseelectro": "electrohouse",
        "rhythmandblues": "rnb",
        "dancemusic": "dance",
        "folkpop": "popfolk",
        "loungemusic": "lounge",
        "housemusic": "house",
        "trancemusic": "trance",
        "ambientmusic": "ambient",
        "prog": "progressive",
        "electronicambient": "electroambient",
        "classicalmusic": "classical",
        "electronika": "electronica",
        "raps": "rap",
        "tecno": "techno",
        "rockalternatif": "alternativerock",
        "hiphopinstrumental": "instrumentalhiphop",
    },
    "instrument": {
        "synth": "synthesizer",
        "synths": "synthesizer",
        "synthesizers": "synthesizer",
        "synthetizer": "synthesizer",
        "drum": "drums",
        "string": "strings",
        "guitars": "guitar",
        "guitare": "guitar",
        "guitares": "guitar",
        "guitarra": "guitar",
        "chitarra": "guitar",
        "pianosolo": "piano",
        "pianoforte": "piano",
        "pianos": "piano",
        "sax": "saxophone",
        "beats": "beat",
        "violins": "violin",
        "violons": "violin",
        "violon": "violin",
        "bells": "bell",
        "percussions": "percussion",
        "pads": "pad",
        "flutes": "flute",
        "electricguitars": "electricguitar",
        "guitareelectrique": "electricguitar",
        "keyboards": "keyboard",
        "keys": "keyboard",
        "teclados": "keyboard",
        "horns": "horn",
        "batterie": "drums",
        "batteria": "drums",
        "bateria": "drums",
        "bongos": "bongo",
        "accordeon": "accordion",
        "basso": "bass",
        "bajo": "bass",
    },
}


Counts = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class TagStatistics:
    """Instrument and genre tag counts per mood tag.

    Attributes
    ----------
    instruments, genres : dict
        ``{mood: {tag: count}}``.
    tracks : dict
        ``{mood: number of tracks}`` (of those also carrying instrument or genre tags).
    source : str
        Where the counts come from (``"builtin"`` or the metadata folder).
    """

    instruments: dict[str, dict[str, int]]
    genres: dict[str, dict[str, int]]
    tracks: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def instrument_counts(self, mood: str) -> dict[str, int]:
        """Counts for ``mood``; the counts over all moods when the mood has none."""
        return _counts_for(self.instruments, mood)

    def genre_counts(self, mood: str) -> dict[str, int]:
        """Counts for ``mood``; the counts over all moods when the mood has none."""
        return _counts_for(self.genres, mood)

    def overall_counts(self, kind: str) -> dict[str, int]:
        """Counts of ``kind`` (``"instrument"`` or ``"genre"``) summed over all moods."""
        return _total(self.instruments if kind == "instrument" else self.genres)

    def tags(self, kind: str) -> frozenset[str]:
        """Every ``kind`` tag (``"instrument"`` or ``"genre"``) counted for some mood."""
        return frozenset(self.overall_counts(kind))


def _total(table: Counts) -> dict[str, int]:
    total: Counter[str] = Counter()
    for per_mood in table.values():
        total.update(per_mood)
    return dict(total)


def _counts_for(table: Counts, mood: str) -> dict[str, int]:
    counts = table.get(mood)
    if counts:
        return dict(counts)
    return _total(table)


def exclusion_set(
    names: object, kind: str, key: str, statistics: TagStatistics | None = None
) -> frozenset[str]:
    """The tags an exclusion list names, spelling variants resolved (``punk`` -> ``punkrock``).

    Parameters
    ----------
    names : sequence of str
        The list as given (an empty one excludes nothing).
    kind : str
        ``"genre"`` or ``"instrument"``.
    key : str
        The setting's name, for the error message (e.g. ``exclude_genres``).
    statistics : TagStatistics, optional
        Its own tags count as known too (a metadata folder with tags of its own).

    Raises
    ------
    ConfigError
        Naming ``key`` when ``names`` is not a list of strings or names a tag that is neither an
        MTG-Jamendo tag of ``kind`` nor one of ``statistics``.
    """
    if isinstance(names, str) or not isinstance(names, list | tuple | frozenset | set):
        raise ConfigError(f"{key} must be a list of {kind} tags, got {names!r}")
    known = set(JAMENDO_GENRES if kind == "genre" else JAMENDO_INSTRUMENTS)
    known |= builtin_palette().tags(kind)
    if statistics is not None:
        known |= statistics.tags(kind)
    aliases = TAG_ALIASES.get(kind, {})
    out: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"{key} must be a list of {kind} tags, got {name!r} in it")
        tag = aliases.get(name, name)
        if tag not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{key}: {name!r} is not a known MTG-Jamendo {kind} tag{hint}")
        out.add(tag)
    return frozenset(out)


def _tags_by_track(path: Path, category: str, tag_map: Mapping[str, str]) -> dict[str, set[str]]:
    """``{track_id: tags}`` of one TSV: only ``category---`` tags, prefix stripped, clean-up applied.

    Rows of the same track merge, so a track listed twice still counts once per tag.
    """
    prefix = f"{category}---"
    by_track: dict[str, set[str]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t")
            header = next(rows, None)
            if header is None or header[0] != "TRACK_ID":
                raise StatisticsError(f"{path} does not start with the MTG-Jamendo header 'TRACK_ID ...'")
            for row in rows:
                tags = [t.strip()[len(prefix) :] for t in row[TAGS_COLUMN:] if t.strip().startswith(prefix)]
                if tags:
                    by_track.setdefault(row[0], set()).update(tag_map.get(t, t) for t in tags)
    except OSError as exc:
        raise StatisticsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise StatisticsError(f"{path} is not an MTG-Jamendo TSV file: {exc}") from exc
    return by_track


def _tag_maps(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / TAG_MAP_FILE
    if not path.is_file():
        return {}
    data = read_json(path, "tag map", StatisticsError)
    if not isinstance(data, dict):
        raise StatisticsError(f"{path} must hold an object of category -> {{variant: tag}}")
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)}


@lru_cache(maxsize=4)
def _load_cached(folder: str, stamps: tuple[tuple[int, int], ...]) -> TagStatistics:
    root = Path(folder)
    if not root.is_dir():
        raise StatisticsError(f"MTG-Jamendo metadata folder {root} does not exist")
    for name in (MOOD_FILE, INSTRUMENT_FILE, GENRE_FILE):
        if not (root / name).is_file():
            raise StatisticsError(f"MTG-Jamendo metadata folder {root} lacks {name}")
    maps = _tag_maps(root)
    moods = _tags_by_track(root / MOOD_FILE, "mood/theme", maps.get("mood/theme", {}))
    instruments: dict[str, Counter[str]] = {}
    genres: dict[str, Counter[str]] = {}
    joined: set[str] = set()
    for category, table, name in (
        ("instrument", instruments, INSTRUMENT_FILE),
        ("genre", genres, GENRE_FILE),
    ):
        for track, tags in _tags_by_track(root / name, category, maps.get(category, {})).items():
            if track not in moods:
                continue
            joined.add(track)
            for mood in moods[track]:
                table.setdefault(mood, Counter()).update(tags)
    tracks = Counter(mood for track in joined for mood in moods[track])
    if not instruments and not genres:
        raise StatisticsError(f"no track in {root / MOOD_FILE} has instrument or genre tags")
    return TagStatistics(
        instruments={m: dict(c) for m, c in sorted(instruments.items())},
        genres={m: dict(c) for m, c in sorted(genres.items())},
        tracks=dict(sorted(tracks.items())),
        source=str(root),
    )


def load_jamendo_statistics(folder: str | os.PathLike[str]) -> TagStatistics:
    """Count instrument and genre tags per mood tag in an MTG-Jamendo metadata folder.

    Parameters
    ----------
    folder : path-like
        Holds ``autotagging_moodtheme.tsv``, ``autotagging_instrument.tsv`` and
        ``autotagging_genre.tsv`` (and optionally ``tag_map.json``).

    Raises
    ------
    StatisticsError
        Naming the missing file if the folder is incomplete.
    """
    root = Path(folder).resolve()
    stamps = tuple(file_stamp(root / name) for name in (MOOD_FILE, INSTRUMENT_FILE, GENRE_FILE, TAG_MAP_FILE))
    return _load_cached(str(root), stamps)


def _validate_table(table: object, key: str, where: str) -> dict[str, dict[str, int]]:
    if not isinstance(table, dict) or not table:
        raise StatisticsError(f"palette {where} needs a non-empty object under {key!r}")
    out: dict[str, dict[str, int]] = {}
    for mood, counts in table.items():
        if not isinstance(counts, dict) or not counts:
            raise StatisticsError(
                f"palette {where}: {key}[{mood!r}] must be a non-empty object of tag -> count"
            )
        for tag, count in counts.items():
            if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
                raise StatisticsError(f"palette {where}: {key}[{mood!r}][{tag!r}] must be a positive integer")
        out[str(mood)] = {str(t): int(c) for t, c in counts.items()}
    return out


@lru_cache(maxsize=1)
def builtin_palette() -> TagStatistics:
    """The small built-in table of instruments and genres per mood tag (``data/builtin_palette.json``).

    Pseudo-counts chosen by hand for the default mapping's mood tags (see ``docs/planner.md``):
    used when no MTG-Jamendo folder is given.
    """
    path = data_path("builtin_palette.json")
    data = read_json(path, "palette file", StatisticsError)
    if not isinstance(data, dict):
        raise StatisticsError(f"palette {path} must hold an object")
    groups = _validate_table(data.get("groups"), "groups", str(path))
    moods = data.get("moods")
    if not isinstance(moods, dict) or not moods:
        raise StatisticsError(f"palette {path} needs a non-empty object under 'moods'")
    instruments: dict[str, dict[str, int]] = {}
    genres: dict[str, dict[str, int]] = {}
    for mood, group in moods.items():
        if f"{group}/instruments" not in groups or f"{group}/genres" not in groups:
            raise StatisticsError(f"palette {path}: mood {mood!r} names unknown group {group!r}")
        instruments[mood] = groups[f"{group}/instruments"]
        genres[mood] = groups[f"{group}/genres"]
    return TagStatistics(instruments, genres, {}, "builtin")
