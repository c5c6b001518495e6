"""The composer: notes for one clip from its features, style and the previous clip's state.

Form: 4/4 bars grouped in 8-bar periods (antecedent ending on a half cadence, consequent ending
on the tonic), chord progressions written for each mode, close-position voicings chosen by least
motion from the previous voicing, and a one-bar melodic motif that is sequenced over the chords,
varied inside the period and developed from clip to clip.

Continuity: a clip continues the musical timeline of the previous one. The chain crossfades
consecutive clips over their last/first ``overlap`` seconds, so a clip first replays the notes the
previous clip played in that region (``carry``) and composes new bars only after it; the
crossfade then joins two renderings of the same notes on the same beat grid.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from musicmed_stream.engines.builtin.mapping import (
    INSTRUMENTS,
    MINOR_MODES,
    MODES,
    Features,
    Instrument,
    Style,
    glide_tempo,
    step_mode,
)
from musicmed_stream.errors import ConfigError, GenerationCancelled

STATE_VERSION = 1
BEATS_PER_BAR = 4
PITCH_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Comfortable keys for a first clip.
START_TONICS = (0, 2, 3, 5, 7, 9, 10)
MODULATE_EVERY = 6  # clips between modulations to the dominant/subdominant at a stable emotion
INTERLUDE_EVERY = 4  # every 4th period the melody rests over the accompaniment
# Arpeggio figures as indices into (bass, chord tones..., top octave).
ARPEGGIO_ORDERS = ((0, 1, 2, 3, 4, 3, 2, 1), (0, 2, 1, 3, 2, 4, 3, 1), (0, 1, 2, 3, 0, 1, 2, 4))

LAYER_CHANNELS = {"lead": 0, "accomp": 1, "bass": 2, "pad": 3, "drums": 9}
DRUM_NOTES = {
    "kick": 36,
    "rim": 37,
    "snare": 38,
    "clap": 39,
    "brush": 40,
    "hat": 42,
    "openhat": 46,
    "shaker": 70,
}
FULL_KIT_LEVEL = 0.55  # above this kit level a soft or brushed groove becomes a full backbeat
CLAP_STYLES = frozenset({"electronic", "pop", "hiphop", "downtempo"})

# 8-bar periods of scale degrees (0 = tonic); bar 4 ends the antecedent, bar 8 the period.
PROGRESSIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "major": (
        (0, 5, 3, 4, 0, 5, 4, 0),
        (0, 3, 0, 4, 5, 3, 4, 0),
        (0, 4, 5, 3, 0, 4, 3, 0),
        (0, 2, 3, 4, 0, 2, 4, 0),
        (5, 3, 0, 4, 5, 3, 4, 0),
        (0, 3, 1, 4, 0, 3, 4, 0),
    ),
    "mixolydian": (
        (0, 6, 3, 0, 0, 6, 3, 0),
        (0, 3, 6, 3, 0, 4, 6, 0),
        (0, 5, 6, 0, 3, 6, 3, 0),
    ),
    "dorian": (
        (0, 3, 0, 3, 2, 6, 3, 0),
        (0, 2, 3, 6, 0, 2, 6, 0),
        (0, 6, 3, 4, 0, 6, 3, 0),
    ),
    "minor": (
        (0, 5, 2, 6, 0, 5, 4, 0),
        (0, 3, 6, 2, 5, 3, 4, 0),
        (0, 5, 3, 4, 0, 5, 4, 0),
        (0, 6, 5, 4, 0, 3, 4, 0),
    ),
    "phrygian": (
        (0, 1, 0, 6, 0, 1, 6, 0),
        (0, 1, 3, 0, 6, 1, 0, 0),
    ),
}


def progression_family(mode: str) -> str:
    return {"ionian": "major", "lydian": "major", "aeolian": "minor"}.get(mode, mode)


@dataclass(frozen=True)
class Note:
    """One note; times in seconds from the clip start (negative: started in the previous clip)."""

    start: float
    end: float
    pitch: int
    velocity: int
    layer: str
    voice: str
    program: int

    @property
    def channel(self) -> int:
        return LAYER_CHANNELS[self.layer]

    def midi(self) -> dict[str, Any]:
        """The note as ``Clip.notes`` documents it."""
        return {
            "start": self.start,
            "end": self.end,
            "pitch": self.pitch,
            "velocity": self.velocity,
            "program": self.program,
            "channel": self.channel,
        }

    def shifted(self, offset: float) -> Note:
        return Note(
            self.start + offset,
            self.end + offset,
            self.pitch,
            self.velocity,
            self.layer,
            self.voice,
            self.program,
        )


@dataclass
class ComposerState:
    """What carries from clip to clip (serialized into ``Clip.state``)."""

    tonic: int
    mode: str
    tempo: float
    bar: int = 0
    progression: list[int] = field(default_factory=list)
    voicing: list[int] = field(default_factory=list)
    bass: int = 43
    melody: int = 67
    motif: list[list[float]] = field(default_factory=list)
    clip_count: int = 0
    duration_s: float = 0.0
    next_bar_s: float = 0.0
    carry: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        # Shallow copies suffice: every value is a number, a string or a list of those.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("progression", "voicing"):
            data[name] = list(data[name])
        data["motif"] = [list(cell) for cell in self.motif]
        data["carry"] = [dict(n) for n in self.carry]
        data.update(engine="builtin", version=STATE_VERSION, key=self.key)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComposerState:
        """Parse a previous clip's state; a malformed state raises ``ConfigError``."""
        try:
            state = cls(
                tonic=int(data["tonic"]) % 12,
                mode=str(data["mode"]),
                tempo=float(data["tempo"]),
                bar=int(data["bar"]),
                progression=[int(d) % 7 for d in data["progression"]],
                voicing=[int(p) for p in data["voicing"]],
                bass=int(data["bass"]),
                melody=int(data["melody"]),
                motif=[[float(x) for x in cell] for cell in data["motif"]],
                clip_count=int(data["clip_count"]),
                duration_s=float(data["duration_s"]),
                next_bar_s=float(data["next_bar_s"]),
                carry=[dict(n) for n in data["carry"]],
            )
            carry_ok = all(
                {"start", "end", "pitch", "velocity", "layer", "voice", "program"} <= set(n)
                for n in state.carry
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid built-in engine state: {exc!r}") from exc
        if state.mode not in MODES or not carry_ok or not (20.0 <= state.tempo <= 300.0):
            raise ConfigError("invalid built-in engine state: bad mode, tempo or carried notes")
        if any(len(cell) != 3 for cell in state.motif) or state.duration_s <= 0:
            raise ConfigError("invalid built-in engine state: bad motif or duration")
        return state


@dataclass(frozen=True)
class Layers:
    """The instruments of one clip."""

    lead: Instrument
    accomp: Instrument
    bass: Instrument
    pad: Instrument
    drum_level: float


def scale_pitches(tonic: int, mode: str, low: int = 0, high: int = 127) -> np.ndarray:
    """All MIDI pitches of the scale between ``low`` and ``high``."""
    classes = {(tonic + s) % 12 for s in MODES[mode]}
    return np.array([p for p in range(low, high + 1) if p % 12 in classes])


def chord_classes(tonic: int, mode: str, degree: int, extensions: int, dominant: bool) -> list[int]:
    """Pitch classes of the diatonic chord on ``degree`` (root first), with 7th/9th extensions.

    ``dominant`` raises a minor third to major (the harmonic-minor V at a cadence).
    """
    scale = MODES[mode]
    steps = [0, 2, 4, 6, 8][: 3 + extensions]
    classes = [(tonic + scale[(degree + s) % 7]) % 12 for s in steps]
    if dominant and (classes[1] - classes[0]) % 12 == 3:
        classes[1] = (classes[1] + 1) % 12
    return classes


def voice_chord(classes: list[int], previous: list[int], low: int, high: int) -> list[int]:
    """Close voicing of ``classes`` within [low, high] moving least from ``previous``."""
    best: list[int] = []
    best_cost = math.inf
    center = (low + high) / 2
    for inversion in range(len(classes)):
        order = classes[inversion:] + classes[:inversion]
        for base in range(low - 12, high + 1):
            if base % 12 != order[0]:
                continue
            pitches = [base]
            for pc in order[1:]:
                nxt = pitches[-1] + ((pc - pitches[-1]) % 12 or 12)
                pitches.append(nxt)
            if pitches[0] < low or pitches[-1] > high:
                continue
            if previous:
                prev = sorted(previous)
                cost = sum(min(abs(p - q) for q in prev) for p in pitches) + 0.3 * abs(
                    len(prev) - len(pitches)
                )
            else:
                cost = abs(np.mean(pitches) - center)
            if cost < best_cost:
                best, best_cost = pitches, cost
    return best or sorted(low + (pc - low) % 12 for pc in classes)


def nearest(pitch_classes: list[int], target: float, low: int, high: int) -> int:
    """The pitch of one of ``pitch_classes`` closest to ``target`` inside [low, high]."""
    candidates = [p for p in range(low, high + 1) if p % 12 in pitch_classes]
    if not candidates:
        return int(min(max(round(target), low), high))
    return min(candidates, key=lambda p: (abs(p - target), p))


def new_motif(
    rng: np.random.Generator, density: float, steps: list[float] | None = None
) -> list[list[float]]:
    """A one-bar motif ``[[onset_beats, duration_beats, scale_step], ...]`` of about ``4*density`` notes."""
    count = int(min(8, max(1, round(BEATS_PER_BAR * density))))
    grid = np.arange(0.5, BEATS_PER_BAR, 0.5)
    weights = np.where(grid % 1 == 0, 3.0, 1.0)
    extra = rng.choice(grid, size=count - 1, replace=False, p=weights / weights.sum()) if count > 1 else []
    onsets = sorted([0.0, *map(float, extra)])
    if steps is None:
        moves = rng.choice([-2, -1, 1, 2, 0], size=count, p=[0.12, 0.34, 0.34, 0.12, 0.08])
        contour = np.cumsum(moves) - moves[0]
        steps = [float(s) for s in np.clip(contour, -4, 5)]
    motif = []
    for i, onset in enumerate(onsets):
        end = onsets[i + 1] if i + 1 < len(onsets) else float(BEATS_PER_BAR)
        motif.append([onset, end - onset, steps[i % len(steps)]])
    return motif


def develop_motif(rng: np.random.Generator, motif: list[list[float]], density: float) -> list[list[float]]:
    """Keep the motif's contour, re-fit its rhythm to the density, and alter one step."""
    steps = [cell[2] for cell in motif]
    target = int(min(8, max(1, round(BEATS_PER_BAR * density))))
    if abs(target - len(motif)) >= 2:
        motif = new_motif(rng, density, steps)
    motif = [list(cell) for cell in motif]
    if len(motif) > 1:
        i = int(rng.integers(1, len(motif)))
        motif[i][2] = float(np.clip(motif[i][2] + rng.choice([-1, 1]), -4, 5))
    return motif


class Composer:
    """Compose one clip. Pure given its inputs; ``compose`` returns notes and the next state."""

    def __init__(
        self,
        features: Features,
        style: Style,
        layers: Layers,
        state: ComposerState,
        seed: int,
        duration_s: float,
        arousal01: float,
        cancel: threading.Event | None = None,
    ) -> None:
        self.f = features
        self.style = style
        self.layers = layers
        self.state = state
        self.rng = np.random.default_rng(seed)
        self.duration = duration_s
        self.cancel = cancel
        self.notes: list[Note] = []
        self.chord_bars = style.bars_per_chord  # bars left in the current chord
        self.arousal = arousal01

    # -- helpers ---------------------------------------------------------------------------------

    def _add(
        self, layer: str, inst: Instrument, start: float, end: float, pitch: int, velocity: float
    ) -> None:
        pitch = int(pitch)
        while pitch < inst.low:
            pitch += 12
        while pitch > inst.high:
            pitch -= 12
        vel = int(min(127, max(1, round(velocity))))
        self.notes.append(Note(start, max(end, start + 0.03), pitch, vel, layer, inst.voice, inst.program))

    def _drum(self, name: str, start: float, velocity: float) -> None:
        vel = int(min(127, max(1, round(velocity))))
        self.notes.append(Note(start, start + 0.1, DRUM_NOTES[name], vel, "drums", name, self.style.kit))

    def _jitter(self) -> float:
        h = self.style.humanize_s
        return float(self.rng.uniform(-h, h)) if h > 0 else 0.0

    def _swing(self, beat: float) -> float:
        """Delay off-beat eighths to ``style.swing`` of the beat."""
        whole = math.floor(beat)
        if abs(beat - whole - 0.5) < 1e-9:
            return whole + self.style.swing
        return beat

    # -- harmony ---------------------------------------------------------------------------------

    def _chord_degree(self, bar: int) -> tuple[int, int, bool, bool]:
        """``(degree, phrase_position, chord_starts_here, cadence_bar)`` of a global bar index."""
        bpc = self.style.bars_per_chord
        pos = (bar // bpc) % 8
        if (pos == 0 and bar % bpc == 0) or not self.state.progression:
            family = progression_family(self.state.mode)
            options = PROGRESSIONS[family]
            self.state.progression = list(options[int(self.rng.integers(len(options)))])
        degree = self.state.progression[pos]
        return degree, pos, bar % bpc == 0, pos in (3, 7) and bar % bpc == bpc - 1

    def _extensions(self, degree: int, cadence: bool) -> int:
        tension = min(1.0, self.f.tension + self.style.sevenths)
        if cadence and degree == 0:
            return 1 if self.style.sevenths >= 0.6 else 0
        if tension > 0.85:
            return 2
        if tension > 0.45 or (degree == 4 and tension > 0.25):
            return 1
        return 0

    # -- layers ------------------------------------------------------------------------------------

    def _melody(self, t0: float, spb: float, classes: list[int], pos: int) -> None:
        if (self.state.bar // (8 * self.style.bars_per_chord)) % INTERLUDE_EVERY == INTERLUDE_EVERY - 1:
            self._interlude(t0, spb, classes, pos)
            return
        inst = self.layers.lead
        st = self.state
        center = self.f.register
        low, high = max(inst.low, center - 8, 55), min(inst.high, center + 12)
        if high - low < 14:  # the register lies outside this instrument: use its own middle
            low, high = inst.low, inst.high
            center = (low + high) // 2
        if (
            self.style.accomp == "pad"
            and self.style.bars_per_chord > 1
            and pos % 2 == 1
            and self.arousal < 0.4
        ):
            return  # sparse ambient lead: every other bar breathes
        motif = st.motif
        if pos in (2, 6):
            motif = [[c[0], c[1], -c[2]] for c in motif]  # inverted contour
        if pos in (3, 7):
            # Cadence: the motif's first half, then a long note on a chord tone (root at the end).
            head = [[on, min(dur, 2.0 - on), s] for on, dur, s in motif if on < 2.0]
            self._cells(head, t0, spb, classes, pos, low, high, center)
            land = max((on + dur for on, dur, _ in head), default=0.0)
            end_beat = 3.5 if self.arousal > 0.4 else 4.0
            targets = [classes[0]] if pos == 7 else [classes[1], classes[2]]
            pitch = nearest(targets, st.melody, low, high)
            start = t0 + land * spb + self._jitter()
            velocity = self.f.velocity + (-2 if pos == 3 else -5) + self.rng.normal(0, 2)
            self._add("lead", inst, start, t0 + end_beat * spb, pitch, velocity)
            st.melody = pitch
            return
        if pos in (1, 5) and motif and motif[-1][1] >= 2.0:
            # Diminution: the long closing note splits into two, stepping on.
            on, dur, step = motif[-1]
            motif = [*motif[:-1], [on, dur / 2, step], [on + dur / 2, dur / 2, step + 1]]
        self._cells(motif, t0, spb, classes, pos, low, high, center)

    def _interlude(self, t0: float, spb: float, classes: list[int], pos: int) -> None:
        """Every few periods the tune rests: one long chord tone per phrase over the accompaniment."""
        if pos not in (0, 4) or self.state.bar % self.style.bars_per_chord:
            return
        inst = self.layers.lead
        low, high = max(inst.low, self.f.register - 8, 55), min(inst.high, self.f.register + 7)
        if high - low < 12:
            low, high = inst.low, inst.high
        pitch = nearest(classes[1:3], self.state.melody, low, high)
        length = min(BEATS_PER_BAR * self.style.bars_per_chord, 3.0 + self.style.bars_per_chord)
        self._add("lead", inst, t0, t0 + length * spb, pitch, self.f.velocity - 8)
        self.state.melody = pitch

    def _cells(
        self,
        cells: list[list[float]],
        t0: float,
        spb: float,
        classes: list[int],
        pos: int,
        low: int,
        high: int,
        center: int,
    ) -> None:
        """Play motif cells from a chord-tone anchor near the previous melody note."""
        st = self.state
        inst = self.layers.lead
        scale = scale_pitches(st.tonic, st.mode, low - 12, high + 12)
        # Each period arches: the consequent (bars 5-7) climbs above the antecedent, cadences settle.
        arch = (0, 2, 3, 0, 3, 5, 4, 0)[pos]
        anchor = nearest(classes, 0.6 * st.melody + 0.4 * center + arch, low, high)
        base_index = int(np.argmin(np.abs(scale - anchor)))
        for onset, dur, step in cells:
            idx = int(np.clip(base_index + round(step), 0, scale.size - 1))
            pitch = int(scale[idx])
            if onset % 2 == 0 and pitch % 12 not in classes and self.f.tension < 0.6:
                pitch = nearest(classes, pitch, low, high)  # consonance on strong beats
            length = dur * self.f.articulation if dur < 2 else dur * 0.95
            accent = 8 if onset == 0 else (3 if onset % 1 == 0 else -4)
            arc = (2, 4, 6, -2, 2, 5, 4, -4)[pos]
            velocity = self.f.velocity + accent + arc + self.rng.normal(0, 2)
            start = t0 + self._swing(onset) * spb + self._jitter()
            self._add("lead", inst, start, start + length * spb, pitch, velocity)
            st.melody = pitch

    def _accomp(self, t0: float, spb: float, voicing: list[int], root: int, sound_chord: bool) -> None:
        """The accompaniment figure of the style for one bar."""
        figure = getattr(self, f"_figure_{self.style.accomp}", None)
        if figure is None:
            raise ConfigError(f"unknown accompaniment figure {self.style.accomp!r}")
        figure(t0, spb, voicing, root, self.f.velocity - 14, sound_chord)

    def _chord(
        self, start: float, end: float, voicing: list[int], velocity: float, spread: float = 0.0
    ) -> None:
        for k, p in enumerate(voicing):
            self._add("accomp", self.layers.accomp, start + spread * k, end, p, velocity)

    def _figure_pad(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Held chords (ambient, soundtrack)."""
        if sound:
            self._chord(t0, t0 + BEATS_PER_BAR * self.chord_bars * spb * 0.98, voicing, vel + 6)

    def _figure_block(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Half-note chords, quarter-note chords when aroused (pop, chillout)."""
        hits = (0.0, 2.0) if self.arousal < 0.55 else (0.0, 1.0, 2.0, 3.0)
        length = (2.0 if len(hits) == 2 else 0.9) * self.f.articulation
        for beat in hits:
            self._chord(t0 + beat * spb, t0 + (beat + length) * spb, voicing, vel - (0 if beat == 0 else 5))

    def _figure_arpeggio(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Broken chords up and down from the bass, pedalled to the bar end (classical, new age)."""
        tones = [root, *voicing, voicing[0] + 12]
        # The figure changes with each period: up-down, broken thirds, rolling upward.
        period = self.state.bar // (8 * self.style.bars_per_chord)
        order = ARPEGGIO_ORDERS[period % len(ARPEGGIO_ORDERS)]
        step = 0.5 if self.arousal > 0.3 else 1.0
        for i, beat in enumerate(np.arange(0.0, BEATS_PER_BAR, step)):
            p = tones[order[i % len(order)] % len(tones)]
            start = t0 + self._swing(float(beat)) * spb + self._jitter()
            ring = (BEATS_PER_BAR - beat) * spb
            self._add("accomp", self.layers.accomp, start, start + ring, p, vel + (4 if beat == 0 else 0))

    def _figure_fingerpick(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Travis-style thumb bass (root, fifth) under alternating upper strings (folk, world)."""
        pattern = [root, voicing[-1], voicing[1], voicing[-1], root + 7, voicing[-1], voicing[1], voicing[0]]
        for i, beat in enumerate(np.arange(0.0, BEATS_PER_BAR, 0.5)):
            start = t0 + self._swing(float(beat)) * spb + self._jitter()
            accent = 5 if i % 4 == 0 else 0
            self._add("accomp", self.layers.accomp, start, start + 1.5 * spb, pattern[i % 8], vel + accent)

    def _figure_comp(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Syncopated, swung chord stabs (jazz, lounge, blues)."""
        if self.arousal < 0.5:
            hits: tuple[tuple[float, float], ...] = ((0.0, 1.2), (1.5, 0.9))
        else:
            hits = ((0.0, 0.9), (1.5, 0.6), (2.5, 0.6), (3.5, 0.4))
        for beat, length in hits:
            start = t0 + self._swing(beat) * spb + self._jitter()
            self._chord(start, start + length * spb, voicing, vel - 2)

    def _figure_strum(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Down/up strums, 12 ms between strings (rock)."""
        hits = (0.0, 1.5, 2.5, 3.0) if self.arousal < 0.6 else (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
        for beat in hits:
            start = t0 + beat * spb + self._jitter()
            down = beat % 1 == 0
            order = voicing if down else voicing[::-1]
            end = start + 0.9 * spb * self.f.articulation
            self._chord(start, end, order, vel - (0 if down else 8), spread=0.012)

    def _figure_pulse(
        self, t0: float, spb: float, voicing: list[int], root: int, vel: int, sound: bool
    ) -> None:
        """Staccato repeated chords on the grid (electronic)."""
        step = 0.5 if self.arousal > 0.35 else 1.0
        for beat in np.arange(0.0, BEATS_PER_BAR, step):
            start = t0 + float(beat) * spb
            self._chord(start, start + step * 0.6 * spb, voicing, vel - (0 if beat % 1 == 0 else 6))

    def _bass(
        self, t0: float, spb: float, root_pc: int, classes: list[int], next_root_pc: int, new_chord: bool
    ) -> None:
        kind = self.style.bass
        inst = self.layers.bass
        st = self.state
        root = nearest([root_pc], st.bass, 36, 50)
        vel = self.f.velocity - 8
        a = self.arousal
        if kind == "none":
            return
        if kind == "root":
            if a < 0.35:
                if new_chord:
                    dur = BEATS_PER_BAR * self.chord_bars
                    self._add("bass", inst, t0, t0 + dur * spb * 0.97, root, vel)
            else:
                fifth = nearest([classes[2]], root + 7, root, root + 12)
                self._add("bass", inst, t0, t0 + 1.9 * spb, root, vel)
                self._add("bass", inst, t0 + 2 * spb, t0 + 3.9 * spb, fifth if a > 0.6 else root, vel - 4)
        elif kind == "walking":
            nxt = nearest([next_root_pc], root, root - 7, root + 7)
            third = nearest([classes[1]], root + 3, root, root + 12)
            fifth = nearest([classes[2]], root + 7, root, root + 12)
            approach = nxt - 1 if nxt > root else nxt + 1
            line = (root, third, fifth, approach) if a > 0.3 else (root, fifth)
            step = BEATS_PER_BAR / len(line)
            for i, p in enumerate(line):
                start = t0 + i * step * spb + self._jitter()
                self._add("bass", inst, start, start + step * 0.9 * spb, p, vel - (0 if i == 0 else 6))
        elif kind == "pulse":
            step = 0.5 if a > 0.45 else 1.0
            for beat in np.arange(0.0, BEATS_PER_BAR, step):
                start = t0 + float(beat) * spb
                self._add(
                    "bass", inst, start, start + step * 0.7 * spb, root, vel - (0 if beat % 1 == 0 else 8)
                )
        st.bass = root

    def _pad(self, t0: float, spb: float, voicing: list[int], new_chord: bool) -> None:
        if not new_chord or (
            self.layers.pad.voice == self.layers.accomp.voice and self.style.accomp == "pad"
        ):
            return
        if self.arousal > 0.7 and self.style.accomp not in ("pad", "block"):
            return
        dur = BEATS_PER_BAR * self.chord_bars * spb
        vel = self.f.velocity - 22
        for p in voicing[:3]:
            self._add("pad", self.layers.pad, t0, t0 + dur * 0.99, p + 12 if p < 55 else p, vel)

    def _drum_kind(self, level: float) -> str:
        """The groove: the style's own, a full backbeat once the kit is loud (high arousal)."""
        kind = self.style.drums if self.style.drums != "none" else "soft"
        if level > FULL_KIT_LEVEL and kind in ("soft", "brush", "halftime"):
            return "backbeat"
        return kind

    def _drums(self, t0: float, spb: float, pos: int) -> None:
        level = self.layers.drum_level
        if level < 0.05:
            return
        kind = self._drum_kind(level)
        v = 30 + 70 * level
        # Hats in sixteenths when the music is at its most aroused, eighths otherwise.
        hat_step = 0.25 if level > 0.8 else 0.5

        def hit(name: str, beat: float, scale: float) -> None:
            self._drum(name, t0 + self._swing(beat) * spb + self._jitter() * 0.5, v * scale)

        def hats(scale: float) -> None:
            for beat in np.arange(0.0, 4.0, hat_step):
                hit("hat", float(beat), scale if beat % 1 == 0 else 0.7 * scale)

        def backbeat(scale: float) -> None:
            for beat in (1.0, 3.0):
                hit("snare", beat, scale)
                if self.style.name in CLAP_STYLES:
                    hit("clap", beat, 0.7 * scale)

        if kind == "soft":
            for beat in np.arange(0.0, 4.0, 0.5):
                hit("shaker", float(beat), 0.55 if beat % 1 == 0 else 0.4)
            hit("kick", 0.0, 0.8)
            if level > 0.3:
                hit("rim", 2.0, 0.5)
        elif kind == "backbeat":
            hit("kick", 0.0, 1.0)
            hit("kick", 2.0, 0.9)
            if level > 0.6:
                hit("kick", 2.5, 0.7)
            backbeat(0.85)
            hats(0.5)
        elif kind == "four":
            for beat in range(4):
                if level > 0.4 or beat % 2 == 0:  # calm electronic: kick on 1 and 3 only
                    hit("kick", float(beat), 0.95)
                hit("openhat" if level > 0.6 else "hat", beat + 0.5, 0.45)
            if level > 0.8:
                for beat in range(4):
                    hit("hat", beat + 0.25, 0.25)
                    hit("hat", beat + 0.75, 0.25)
            if level > 0.35:
                backbeat(0.6 + 0.3 * level)
        elif kind == "brush":
            hit("kick", 0.0, 0.5)
            for beat in (1.0, 3.0):
                hit("brush", beat, 0.7)
            for beat in (0.0, 1.0, 1.5, 2.0, 3.0, 3.5):
                hit("hat", beat, 0.45 if beat % 1 == 0 else 0.3)
        elif kind == "halftime":
            hit("kick", 0.0, 1.0)
            hit("kick", 2.5, 0.8)
            hit("snare", 2.0, 0.8)
            hats(0.45)
        if pos == 7 and level > 0.4:
            hit("rim", 3.5, 0.6)

    # -- clip ------------------------------------------------------------------------------------

    def compose(self, start_s: float, tempo_start: float) -> tuple[list[Note], ComposerState]:
        """Compose bars from ``start_s`` until the clip end; return notes and the next state."""
        st = self.state
        tempo_end = glide_tempo(tempo_start, self.f.tempo_bpm)
        remaining = max(0.0, self.duration - start_s)
        mean_bar = BEATS_PER_BAR * 60.0 / (0.5 * (tempo_start + tempo_end))
        n_bars = max(1, math.ceil(remaining / mean_bar))
        t = start_s
        i = 0
        while t < self.duration:
            if self.cancel is not None and self.cancel.is_set():
                raise GenerationCancelled("clip generation cancelled")
            tempo = tempo_start + (tempo_end - tempo_start) * min(1.0, (i + 1) / n_bars)
            spb = 60.0 / tempo
            self._bar(t, spb, first=i == 0)
            t += BEATS_PER_BAR * spb
            st.bar += 1
            st.tempo = tempo
            i += 1
        st.next_bar_s = t - self.duration
        return self.notes, st

    def _bar(self, t0: float, spb: float, first: bool = False) -> None:
        st = self.state
        degree, pos, new_chord, cadence = self._chord_degree(st.bar)
        # Held layers sound from a chord's first bar, and from a clip's first new bar even when
        # its chord began in the previous clip (else that bar would fall silent).
        self.chord_bars = self.style.bars_per_chord - st.bar % self.style.bars_per_chord
        sound_chord = new_chord or first
        dominant = st.mode in MINOR_MODES and degree == 4 and pos in (3, 6, 7) and self.f.tension > 0.3
        ext = self._extensions(degree, cadence)
        classes = chord_classes(st.tonic, st.mode, degree, ext, dominant)
        acc = self.layers.accomp
        # Accompaniment sits below the melody: C3-F4, or around the lead for pads.
        low = max(acc.low, 48 if self.style.accomp != "pad" else 52)
        voicing = (
            voice_chord(classes, st.voicing, low, low + 17) if new_chord or not st.voicing else st.voicing
        )
        if new_chord:
            st.voicing = voicing
        next_degree = st.progression[(pos + 1) % 8]
        next_root = chord_classes(st.tonic, st.mode, next_degree, 0, False)[0]
        root = nearest([classes[0]], st.bass, 36, 50)
        self._melody(t0, spb, classes[:3], pos)
        self._accomp(t0, spb, voicing, root, sound_chord)
        self._bass(t0, spb, classes[0], classes, next_root, sound_chord)
        self._pad(t0, spb, voicing, sound_chord)
        self._drums(t0, spb, pos)


def initial_state(features: Features, seed: int, duration_s: float) -> ComposerState:
    """The state of a session's first clip: a comfortable key chosen by the seed."""
    rng = np.random.default_rng([seed, 17])
    tonic = int(START_TONICS[int(rng.integers(len(START_TONICS)))])
    state = ComposerState(tonic=tonic, mode=features.mode, tempo=features.tempo_bpm, duration_s=duration_s)
    state.melody = features.register
    state.motif = new_motif(rng, features.density)
    return state


def continue_state(previous: ComposerState, features: Features, seed: int) -> ComposerState:
    """The next clip's starting state: gradual mode change, developed motif, rare modulation."""
    rng = np.random.default_rng([seed, 29])
    state = ComposerState.from_dict(previous.to_dict())
    state.mode = step_mode(previous.mode, features.mode)
    state.motif = develop_motif(rng, previous.motif or new_motif(rng, features.density), features.density)
    state.clip_count = previous.clip_count + 1
    if state.clip_count % MODULATE_EVERY == 0 and state.mode == previous.mode:
        # Direct modulation at a phrase boundary: the new key starts a fresh period.
        state.tonic = (state.tonic + (7 if rng.random() < 0.5 else 5)) % 12
        state.bar = -(-state.bar // 16) * 16
        state.progression = []
    return state


def default_layers(lead: Instrument, style: Style, percussive: bool, features: Features) -> Layers:
    """Accompaniment, bass and pad instruments of a style around the lead."""
    accomp = INSTRUMENTS[style.accomp_instrument]
    if lead.voice in ("piano", "epiano", "nylon", "steel", "harp") and style.accomp in (
        "arpeggio",
        "block",
        "fingerpick",
    ):
        accomp = lead  # a pianist or guitarist accompanies themselves
    # A genre's resting groove (its drum floor) fades out toward deep calm: no kit there.
    floor = style.drum_floor * features.groove
    level = max(features.percussion, floor) if style.drums != "none" else 0.0
    if percussive:  # a drum tag: the kit is part of the prompt, audible whatever the genre
        level = max(0.5, min(1.0, level * 1.4))
    return Layers(lead, accomp, INSTRUMENTS[style.bass_instrument], INSTRUMENTS[style.pad_instrument], level)


__all__ = ["Composer", "ComposerState", "Layers", "Note", "continue_state", "default_layers", "initial_state"]
