"""From a segment (valence, arousal, instrument tag, genre tag) to musical features and a style.

The emotion-to-feature mapping follows the cue tables of Gabrielsson & Lindström (2010) and the
regression results of Eerola, Friberg & Bresin (2013): arousal is carried mostly by tempo,
loudness, articulation, rhythmic density and timbre brightness; valence mostly by mode,
consonance (harmonic tension) and register. ``docs/builtin_engine.md`` holds the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Modes ordered from darkest to brightest; neighbours differ by exactly one scale degree, so a
# step along this list is a gentle modal mixture rather than a change of key.
MODES: dict[str, tuple[int, ...]] = {
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
}
MODE_ORDER = tuple(MODES)
MINOR_MODES = ("phrygian", "aeolian", "dorian")
TEMPO_MIN, TEMPO_MAX = 48.0, 156.0


@dataclass(frozen=True)
class Features:
    """Target musical features of one clip (see the table in ``docs/builtin_engine.md``)."""

    tempo_bpm: float
    mode: str
    tension: float  # 0 consonant triads .. 1 sevenths, ninths, dominant colour
    register: int  # MIDI centre of the lead melody
    velocity: int  # MIDI velocity of an unaccented lead note
    articulation: float  # sounding fraction of the inter-onset interval (1 legato .. 0.5 detached)
    density: float  # lead notes per beat
    brightness_hz: float  # master low-pass cut-off
    percussion: float  # 0 none .. 1 full kit level
    groove: float  # how much of a genre's resting groove plays: 0 in deep calm (no kit) .. 1
    reverb_room: float
    reverb_wet: float


def _unit(x: float) -> float:
    """[-1, 1] -> [0, 1], clamped."""
    return min(1.0, max(0.0, (x + 1.0) / 2.0))


def mode_for(valence: float) -> str:
    """Mode from valence: minor below -0.3, dorian/mixolydian in between, major above 0.2."""
    if valence < -0.65:
        return "phrygian" if valence < -0.85 else "aeolian"
    if valence < -0.3:
        return "aeolian"
    if valence < -0.05:
        return "dorian"
    if valence < 0.2:
        return "mixolydian"
    if valence < 0.8:
        return "ionian"
    return "lydian"


def features_for(valence: float, arousal: float, tempo_factor: float = 1.0) -> Features:
    """Map a circumplex point to musical features (pure function).

    Every cue is a monotonic function of arousal (and valence where listed), spanning the
    whole range: about 60 BPM, soft, dark, legato, sparse and without a kit at arousal -0.8;
    about 135 BPM, loud, bright, detached, dense and with a full kit at +0.8.
    """
    a = _unit(arousal)
    v = _unit(valence)
    return Features(
        tempo_bpm=min(TEMPO_MAX, max(TEMPO_MIN, (50.0 + 97.0 * a) * tempo_factor)),
        mode=mode_for(valence),
        tension=min(1.0, max(0.0, 0.65 * (1.0 - v) + 0.35 * a - 0.15)),
        register=round(67 + 6 * valence + 3 * arousal),
        velocity=round(40 + 60 * a),
        articulation=1.0 - 0.45 * a,
        density=0.45 * 5.0**a,
        brightness_hz=min(16000.0, 2200.0 * 2.0 ** (2.4 * a + 0.6 * v)),
        percussion=max(0.0, (a - 0.35) / 0.65),
        groove=min(1.0, max(0.0, (a - 0.25) / 0.2)),
        reverb_room=0.88 - 0.3 * a,
        reverb_wet=0.34 - 0.14 * a,
    )


@dataclass(frozen=True)
class MoodNudge:
    """How a mood/theme word of the prompt adjusts the features its coordinates gave."""

    tempo: float = 1.0  # factor
    velocity: int = 0  # MIDI velocity offset
    reverb: float = 0.0  # added to the wet level (and a little to the room)
    brightness: float = 1.0  # cut-off factor
    articulation: float = 0.0  # added to the sounding fraction
    density: float = 1.0  # factor on lead notes per beat


# MTG-Jamendo mood/theme tags that name a musical property beyond valence and arousal.
MOOD_NUDGES: dict[str, MoodNudge] = {
    "slow": MoodNudge(tempo=0.9, density=0.8),
    "fast": MoodNudge(tempo=1.1, density=1.2),
    "soft": MoodNudge(velocity=-8, brightness=0.8),
    "mellow": MoodNudge(velocity=-5, brightness=0.8, articulation=0.05),
    "heavy": MoodNudge(velocity=6, brightness=0.9),
    "powerful": MoodNudge(velocity=8),
    "dream": MoodNudge(reverb=0.08),
    "space": MoodNudge(reverb=0.1, brightness=0.9),
    "soundscape": MoodNudge(reverb=0.1, density=0.7),
    "ambiental": MoodNudge(reverb=0.08, density=0.8),
    "deep": MoodNudge(reverb=0.06, brightness=0.85),
    "meditative": MoodNudge(tempo=0.92, reverb=0.08, density=0.7),
    "nature": MoodNudge(reverb=0.05, density=0.85),
    "ballad": MoodNudge(tempo=0.95, articulation=0.05),
    "romantic": MoodNudge(reverb=0.03, articulation=0.05),
    "love": MoodNudge(reverb=0.03, articulation=0.05),
    "children": MoodNudge(brightness=1.15, articulation=-0.1),
    "fun": MoodNudge(articulation=-0.1),
    "funny": MoodNudge(articulation=-0.12),
    "groovy": MoodNudge(articulation=-0.05),
    "epic": MoodNudge(velocity=6, reverb=0.05),
    "trailer": MoodNudge(velocity=6, reverb=0.05),
    "dramatic": MoodNudge(velocity=4, reverb=0.04),
    "horror": MoodNudge(reverb=0.1, brightness=0.8),
    "party": MoodNudge(tempo=1.05),
    "sport": MoodNudge(tempo=1.05),
    "upbeat": MoodNudge(tempo=1.05, articulation=-0.05),
}


def apply_mood(features: Features, *words: str) -> Features:
    """Adjust ``features`` by the mood/theme words of the prompt (unknown words change nothing)."""
    for word in words:
        nudge = MOOD_NUDGES.get(_clean(word))
        if nudge is None:
            continue
        features = replace(
            features,
            tempo_bpm=min(TEMPO_MAX, max(TEMPO_MIN, features.tempo_bpm * nudge.tempo)),
            velocity=min(110, max(30, features.velocity + nudge.velocity)),
            reverb_wet=min(0.45, max(0.1, features.reverb_wet + nudge.reverb)),
            reverb_room=min(0.95, max(0.3, features.reverb_room + nudge.reverb / 2)),
            brightness_hz=min(16000.0, max(800.0, features.brightness_hz * nudge.brightness)),
            articulation=min(1.0, max(0.45, features.articulation + nudge.articulation)),
            density=min(2.2, max(0.35, features.density * nudge.density)),
        )
    return features


def step_mode(previous: str, target: str) -> str:
    """Move at most one step along the brightness order of modes (gradual modal mixture)."""
    i, j = MODE_ORDER.index(previous), MODE_ORDER.index(target)
    if abs(j - i) <= 1:
        return target
    return MODE_ORDER[i + (1 if j > i else -1)]


def glide_tempo(previous: float, target: float, max_ratio: float = 1.12) -> float:
    """Tempo for the end of this clip: toward ``target`` by at most ``max_ratio`` per clip."""
    hi = previous * max_ratio
    lo = previous / max_ratio
    return min(hi, max(lo, target))


# --- instruments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instrument:
    """A synthetic voice and its General MIDI program, with a playable range."""

    voice: str
    program: int
    low: int
    high: int


INSTRUMENTS: dict[str, Instrument] = {
    "piano": Instrument("piano", 0, 36, 96),
    "electricpiano": Instrument("epiano", 4, 36, 91),
    "rhodes": Instrument("epiano", 4, 36, 91),
    "keyboard": Instrument("piano", 0, 36, 96),
    "acousticguitar": Instrument("steel", 25, 40, 84),
    "classicalguitar": Instrument("nylon", 24, 40, 84),
    "guitar": Instrument("nylon", 24, 40, 84),
    "electricguitar": Instrument("eguitar", 27, 40, 88),
    "ukulele": Instrument("nylon", 24, 60, 84),
    "harp": Instrument("harp", 46, 36, 96),
    "bass": Instrument("bass", 33, 28, 55),
    "synthbass": Instrument("bass", 38, 28, 55),
    "acousticbassguitar": Instrument("bass", 32, 28, 55),
    "doublebass": Instrument("upright", 32, 28, 55),
    "strings": Instrument("strings", 48, 36, 93),
    "orchestra": Instrument("strings", 48, 36, 93),
    "violin": Instrument("violin", 40, 55, 96),
    "viola": Instrument("violin", 41, 48, 88),
    "cello": Instrument("cello", 42, 36, 76),
    "pad": Instrument("pad", 89, 36, 88),
    "synthesizer": Instrument("synth", 81, 40, 96),
    "synth": Instrument("synth", 81, 40, 96),
    "computer": Instrument("synth", 81, 40, 96),
    "sampler": Instrument("epiano", 4, 36, 91),
    "organ": Instrument("organ", 16, 36, 96),
    "pipeorgan": Instrument("pipeorgan", 19, 36, 96),
    "flute": Instrument("flute", 73, 60, 96),
    "clarinet": Instrument("clarinet", 71, 50, 91),
    "oboe": Instrument("oboe", 68, 58, 91),
    "saxophone": Instrument("sax", 65, 49, 81),
    "horn": Instrument("horn", 60, 41, 77),
    "trumpet": Instrument("trumpet", 56, 54, 82),
    "trombone": Instrument("brass", 57, 40, 72),
    "brass": Instrument("brass", 61, 40, 80),
    "voice": Instrument("choir", 52, 48, 79),
    "choir": Instrument("choir", 52, 48, 79),
    "accordion": Instrument("accordion", 21, 53, 89),
    "harmonica": Instrument("harmonica", 22, 60, 91),
    "bell": Instrument("bell", 14, 60, 96),
    "bells": Instrument("bell", 14, 60, 96),
    "marimba": Instrument("mallet", 12, 45, 96),
}
# Percussion tags have no pitch of their own: a melodic lead plus a stronger kit.
PERCUSSION_TAGS: dict[str, str] = {
    "drums": "electricpiano",
    "percussion": "marimba",
    "bongo": "marimba",
    "beat": "synthesizer",
    "drummachine": "synthesizer",
}
# Substrings for tags not listed above (e.g. "acousticpiano", "synthpad", "femalevoice").
FALLBACK_HINTS: tuple[tuple[str, str], ...] = (
    ("piano", "piano"),
    ("guitar", "guitar"),
    ("bass", "bass"),
    ("pad", "pad"),
    ("synth", "synthesizer"),
    ("string", "strings"),
    ("violin", "violin"),
    ("cello", "cello"),
    ("organ", "organ"),
    ("flute", "flute"),
    ("whistle", "flute"),
    ("sax", "saxophone"),
    ("horn", "horn"),
    ("trumpet", "trumpet"),
    ("brass", "brass"),
    ("voice", "voice"),
    ("vocal", "voice"),
    ("choir", "voice"),
    ("bell", "bell"),
    ("chime", "bell"),
    ("glock", "bell"),
    ("celesta", "bell"),
    ("vibra", "marimba"),
    ("xylo", "marimba"),
    ("kalimba", "marimba"),
    ("harp", "harp"),
    ("reed", "clarinet"),
    ("wind", "flute"),
    ("key", "piano"),
)
FALLBACK_INSTRUMENT = "piano"


def _clean(tag: str) -> str:
    return "".join(ch for ch in tag.lower() if ch.isalnum())


def resolve_instrument(tag: str) -> tuple[str, Instrument, bool]:
    """``(name, instrument, percussive)`` for an instrument tag; unknown tags get a close voice.

    ``percussive`` is True for drum/beat tags, which get a melodic lead and a stronger kit.
    """
    name = _clean(tag)
    percussive = name in PERCUSSION_TAGS
    if percussive:
        name = PERCUSSION_TAGS[name]
    if name in INSTRUMENTS:
        return name, INSTRUMENTS[name], percussive
    for hint, target in FALLBACK_HINTS:
        if hint in name:
            return target, INSTRUMENTS[target], percussive
    if "drum" in name or "perc" in name:
        return "marimba", INSTRUMENTS["marimba"], True
    return FALLBACK_INSTRUMENT, INSTRUMENTS[FALLBACK_INSTRUMENT], False


# --- genres ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How a genre plays: accompaniment figure, bass, drums, harmony and tempo habits."""

    name: str
    accomp: str  # pad | arpeggio | fingerpick | comp | strum | pulse | block
    accomp_instrument: str
    bass: str  # none | root | walking | pulse
    bass_instrument: str
    drums: str  # none | soft | backbeat | four | brush | halftime
    pad_instrument: str
    bars_per_chord: int = 1
    sevenths: float = 0.0  # added to the emotional tension for chord extensions
    swing: float = 0.5  # fraction of the beat where the off-beat eighth falls
    tempo_factor: float = 1.0
    drum_floor: float = 0.0  # drum level even at low arousal
    humanize_s: float = 0.008
    kit: int = 0  # GM drum-kit program (bank 128)


# GM drum kits (bank 128 programs) a style's drums are played with.
KIT_STANDARD, KIT_ROOM, KIT_ELECTRONIC, KIT_808, KIT_JAZZ, KIT_BRUSH = 0, 8, 24, 25, 32, 40

STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("ambient", "pad", "pad", "root", "bass", "none", "pad", 2, tempo_factor=0.94),
        Style("newage", "arpeggio", "harp", "root", "bass", "none", "strings", 2, tempo_factor=0.95),
        Style("classical", "arpeggio", "piano", "root", "cello", "none", "strings", 1),
        Style("orchestral", "arpeggio", "harp", "root", "cello", "none", "strings", 1, 0.1),
        Style("soundtrack", "pad", "strings", "root", "cello", "halftime", "strings", 2, 0.15, kit=KIT_ROOM),
        Style(
            "chillout",
            "block",
            "electricpiano",
            "root",
            "bass",
            "soft",
            "pad",
            1,
            0.3,
            0.58,
            0.97,
            0.2,
            kit=KIT_ROOM,
        ),
        Style(
            "lounge",
            "comp",
            "electricpiano",
            "walking",
            "doublebass",
            "brush",
            "pad",
            1,
            0.6,
            0.6,
            kit=KIT_BRUSH,
        ),
        Style(
            "jazz",
            "comp",
            "piano",
            "walking",
            "doublebass",
            "brush",
            "pad",
            1,
            0.8,
            0.64,
            1.0,
            0.2,
            kit=KIT_BRUSH,
        ),
        Style(
            "blues", "comp", "piano", "walking", "doublebass", "brush", "organ", 1, 0.6, 0.64, kit=KIT_JAZZ
        ),
        Style(
            "electronic",
            "pulse",
            "synthesizer",
            "pulse",
            "synthbass",
            "four",
            "pad",
            1,
            0.1,
            0.5,
            1.06,
            0.3,
            0.0,
            kit=KIT_ELECTRONIC,
        ),
        Style(
            "downtempo",
            "block",
            "electricpiano",
            "root",
            "synthbass",
            "halftime",
            "pad",
            1,
            0.3,
            0.56,
            0.95,
            0.2,
            kit=KIT_808,
        ),
        Style(
            "rock",
            "strum",
            "electricguitar",
            "pulse",
            "bass",
            "backbeat",
            "organ",
            1,
            0.0,
            0.5,
            1.04,
            0.3,
            kit=KIT_ROOM,
        ),
        Style("pop", "block", "piano", "root", "bass", "backbeat", "strings", 1, 0.1, 0.5, 1.0, 0.15),
        Style(
            "folk", "fingerpick", "acousticguitar", "root", "doublebass", "soft", "accordion", 1, kit=KIT_ROOM
        ),
        Style("world", "fingerpick", "classicalguitar", "root", "doublebass", "soft", "strings", 1),
        Style("latin", "fingerpick", "classicalguitar", "walking", "doublebass", "soft", "pad", 1, 0.4),
        Style(
            "hiphop",
            "block",
            "electricpiano",
            "root",
            "synthbass",
            "halftime",
            "pad",
            1,
            0.4,
            0.58,
            0.95,
            0.5,
            kit=KIT_808,
        ),
        Style("easylistening", "block", "piano", "root", "bass", "soft", "strings", 1, 0.2),
    )
}
GENRE_FAMILIES: dict[str, str] = {
    "atmospheric": "ambient",
    "darkambient": "ambient",
    "electroambient": "ambient",
    "meditative": "ambient",
    "relaxation": "ambient",
    "minimal": "ambient",
    "experimental": "ambient",
    "newage": "newage",
    "symphonic": "orchestral",
    "film": "soundtrack",
    "filmscore": "soundtrack",
    "soundtracks": "soundtrack",
    "trailer": "soundtrack",
    "baroque": "classical",
    "chamber": "classical",
    "contemporary": "classical",
    "chillout": "chillout",
    "chill": "chillout",
    "triphop": "downtempo",
    "acidjazz": "lounge",
    "bossanova": "latin",
    "fusion": "jazz",
    "swing": "jazz",
    "soul": "blues",
    "funk": "blues",
    "rnb": "hiphop",
    "rap": "hiphop",
    "instrumentalhiphop": "hiphop",
    "singersongwriter": "folk",
    "popfolk": "folk",
    "country": "folk",
    "celtic": "folk",
    "chanson": "folk",
    "ethno": "world",
    "worldfusion": "world",
    "reggae": "world",
    "dub": "downtempo",
    "instrumentalpop": "pop",
    "synthpop": "electronic",
    "electropop": "electronic",
    "60s": "pop",
    "70s": "pop",
    "80s": "pop",
    "90s": "pop",
    "classicrock": "rock",
    "bluesrock": "blues",
    "groove": "blues",
    "hard": "rock",
    "idm": "electronic",
    "improvisation": "jazz",
    "medieval": "folk",
    "choir": "classical",
    "gospel": "blues",
}
GENRE_HINTS: tuple[tuple[str, str], ...] = (
    ("ambient", "ambient"),
    ("classic", "classical"),
    ("orchestr", "orchestral"),
    ("symphon", "orchestral"),
    ("soundtrack", "soundtrack"),
    ("jazz", "jazz"),
    ("blues", "blues"),
    ("lounge", "lounge"),
    ("chill", "chillout"),
    ("folk", "folk"),
    ("rock", "rock"),
    ("metal", "rock"),
    ("punk", "rock"),
    ("grunge", "rock"),
    ("indie", "rock"),
    ("alternative", "rock"),
    ("progressive", "rock"),
    ("psychedelic", "rock"),
    ("pop", "pop"),
    ("hop", "hiphop"),
    ("techno", "electronic"),
    ("trance", "electronic"),
    ("house", "electronic"),
    ("dance", "electronic"),
    ("edm", "electronic"),
    ("club", "electronic"),
    ("step", "electronic"),
    ("bass", "electronic"),
    ("beat", "electronic"),
    ("disco", "electronic"),
    ("electr", "electronic"),
    ("industrial", "electronic"),
    ("wave", "electronic"),
    ("latin", "latin"),
    ("world", "world"),
)
FALLBACK_STYLE = "easylistening"


def resolve_style(genre: str) -> Style:
    """The style of a genre tag (MTG-Jamendo spelling); unknown genres get a gentle default."""
    name = _clean(genre)
    if name in STYLES:
        return STYLES[name]
    if name in GENRE_FAMILIES:
        return STYLES[GENRE_FAMILIES[name]]
    for hint, target in GENRE_HINTS:
        if hint in name:
            return STYLES[target]
    return STYLES[FALLBACK_STYLE]


def velocity_gain(velocity: float) -> float:
    """Amplitude of a MIDI velocity (about 12 dB between pp and ff, as played, not as a piano's range)."""
    return math.pow(max(1.0, min(127.0, velocity)) / 127.0, 1.6)
