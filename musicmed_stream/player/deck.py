"""The playback deck: the one object the feeder thread shares, live and offline alike.

In the spirit of MPD's ``PlayerControl``, everything the audio path needs sits behind one lock in
one object: the :class:`~musicmed_stream.player.timeline.Timeline` of scheduled audio, the block
processor (high-pass, true-peak limiter), the volume and pause ramps, the ring the sink reads and
the reports of what the sink has played. Other threads talk to it with typed commands
(:meth:`Deck.append`, :meth:`Deck.cut_in`, :meth:`Deck.fade_out`, :meth:`Deck.drop_future`,
:meth:`Deck.pause`, :meth:`Deck.set_volume`, ...) and read back typed reports
(:meth:`Deck.reports`: a voice heard, a bridge, the end of the program).

The deck does no I/O, knows no sessions, plans nothing and never waits: the daemon's producer
decides what to schedule, the feeder thread calls :meth:`Deck.fill`, the sink drains the ring.
The offline render drives the same deck synchronously with :meth:`Deck.render`, so a session
rendered to a file and the same session played by the daemon are the same samples.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from musicmed_stream.chain.block import BlockProcessor
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.chain.crossfade import overlap_frames
from musicmed_stream.player.gain import GainRamp
from musicmed_stream.player.ring import RingBuffer
from musicmed_stream.player.timeline import Label, Timeline, Voice, VoiceKind


@dataclass(frozen=True)
class Heard:
    """The first frame of a voice reaches the sink at output frame ``frame``."""

    frame: int
    label: Label
    position: int  # where the voice starts in the program (frames of program audio before it)


@dataclass(frozen=True)
class Bridged:
    """The deck extended the last voice with a loop of its end: the next audio was late."""

    frame: int
    index: int
    seconds: float


@dataclass(frozen=True)
class Ended:
    """The program's last sound (and the limiter's tail) reaches the sink at ``frame``."""

    frame: int


Report = Heard | Bridged | Ended


@dataclass(frozen=True)
class _Snapshot:
    """The deck before one block: enough to render it again."""

    frame: int
    position: int
    processor: Any
    volume: tuple[float, float]
    pause: tuple[float, float, bool]
    program: tuple[bool, bool, int | None]


@dataclass(frozen=True)
class BridgePolicy:
    """How the deck covers for audio that is late: when less than ``fade_s`` plus two blocks is
    left, the last voice's final ``seconds`` are looped with a ``fade_s`` crossfade."""

    seconds: float = 6.0
    fade_s: float = 1.0


class Deck:
    """Scheduled audio -> block processor -> volume and pause -> ring, under one lock.

    Parameters
    ----------
    sample_rate, channels : int
        Of everything scheduled and of the output.
    chain : ChainConfig
        The block-level chain (crossfade fraction, high-pass, limiter).
    block_size : int
        Frames per rendered block (the sink's block).
    ring_seconds : float
        Processed audio queued for the sink (:attr:`ring`): every command lands at most this late.
    volume : float
        Initial volume, 0..1.
    volume_ramp_s, pause_ramp_s : float
        A full 0 -> 1 volume change, and a fade into or out of a pause, take this long.
    bridge : BridgePolicy, optional
        Loop the last voice when nothing follows in time (live playback); ``None`` never does
        (the offline render schedules every clip before it is needed).
    respond_s : float, optional
        Live playback: a command (a cut-in, a skip, a pause, a volume change, a fade-out) is heard
        within about this long, however much processed audio the ring holds: the deck takes back
        what is queued beyond it and renders it again with the command applied. ``None``: commands
        apply at the render position, up to ``ring_seconds`` ahead of what is heard.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        chain: ChainConfig,
        *,
        block_size: int = 1024,
        ring_seconds: float = 1.0,
        volume: float = 1.0,
        volume_ramp_s: float = 0.3,
        pause_ramp_s: float = 0.1,
        bridge: BridgePolicy | None = None,
        respond_s: float | None = None,
    ) -> None:
        self.sample_rate, self.channels, self.block_size = sample_rate, channels, block_size
        self.chain = chain
        self.bridge = bridge
        self.ring = RingBuffer(max(int(ring_seconds * sample_rate), 2 * block_size), channels)
        self._lock = threading.Lock()
        self._timeline = Timeline(channels)
        self._processor = BlockProcessor(sample_rate, channels, chain)
        self._volume = GainRamp(volume, int(volume_ramp_s * sample_rate))
        self._pause = GainRamp(1.0, int(pause_ramp_s * sample_rate))
        self._paused = False
        self._active = False  # between begin() and the end of the program
        self._final = False  # no more audio will be scheduled: end once the timeline is empty
        self._end_frame: int | None = None
        self._flush_ring = False
        self._output_frames = 0  # frames rendered (written to the ring, or handed out offline)
        self._program_start = 0  # timeline position at begin()
        self._clip_frames: dict[int, int] = {}  # full length of each clip index, for overlaps
        self._last_clip_frames = 0
        self._reports: deque[tuple[int, Report]] = deque()  # (frame of the block that made it, report)
        # (output frames rendered, timeline position) after each block: maps the sink's read
        # position back to the timeline (appended by the renderer, trimmed by readers)
        self._checkpoints: deque[tuple[int, int]] = deque([(0, 0)])
        self._heard: Label | None = None
        # Snapshots taken before each block (live, with ``respond_s``), to take back queued audio
        self._respond = None if respond_s is None else max(round(respond_s * sample_rate), 2 * block_size)
        self._snapshots: deque[_Snapshot] = deque()
        if self._respond is not None:
            self._timeline.keep_frames = self.ring.capacity + 2 * block_size
        self.render_seconds = 0.0  # time spent in fill() (the feeder's share of a core, for benchmarks)
        self.render_frames = 0

    @property
    def latency(self) -> int:
        """Frames by which the limiter's look-ahead delays the output."""
        return self._processor.latency

    @property
    def output_frames(self) -> int:
        return self._output_frames

    # ------------------------------------------------------------------ commands (any thread)

    def begin(self) -> None:
        """Start a new program: drop what is scheduled, reset the block processor (same seed, same
        samples: no filter state from before) and the pause; the volume stays."""
        with self._lock:
            # No take-back reaches back before a new program (it would bring back the idle deck);
            # its queued silence is dropped when its first sound is rendered (``_flush_ring``).
            self._snapshots.clear()
            self._flush_ring = not self._active and not self._timeline.voices
            self._timeline.clear()
            self._processor.reset()
            self._paused = False
            self._pause.set(1.0)
            self._pause.current = 1.0
            self._active, self._final, self._end_frame = True, False, None
            self._program_start = self._timeline.position
            self._clip_frames.clear()
            self._last_clip_frames = 0
            self._heard = None

    def append(
        self, audio: np.ndarray, label: Label, *, frames: int | None = None, fade_s: float | None = None
    ) -> int:
        """Schedule ``audio`` after what is scheduled; returns where it starts in the program
        (frames from :meth:`begin` on the timeline).

        A clip (``label.kind == "clip"``) crossfades with the one before over the chain's fraction
        of the shorter of the two (``frames``: the clip's full length when ``audio`` is only its
        first piece); a ``piece`` follows its clip's previous piece seamlessly; a ``bridge``
        crossfades over ``fade_s``.
        """
        with self._lock:
            if label.kind == "piece":
                overlap = 0
            elif label.kind == "bridge":
                overlap = self._frames(fade_s or 0.0)
            else:
                length = audio.shape[0] if frames is None else frames
                previous = self._last_clip_frames or length
                overlap = overlap_frames(previous, length, self.chain.crossfade_fraction)
                self._last_clip_frames = length
            return self._timeline.append(audio, overlap, label).start - self._program_start

    def cut_in(
        self, audio: np.ndarray, label: Label, fade_s: float, *, frames: int | None = None
    ) -> list[Label]:
        """Start ``audio`` now (at the render position), fading what plays out over ``fade_s``;
        audio scheduled but not started is dropped and its labels returned."""
        with self._lock:
            self._take_back()
            dropped = [v.label for v in self._timeline.future()]
            self._timeline.cut_in(audio, max(self._frames(fade_s), 1), label)
            if label.kind == "clip":
                self._last_clip_frames = audio.shape[0] if frames is None else frames
            self._final = False
            return dropped

    def skip(self, fade_s: float) -> bool:
        """Cut the next scheduled clip in now, over ``fade_s``, with what follows it; ``False`` when
        no clip is scheduled after the one playing (the caller cuts in the next one it makes)."""
        with self._lock:
            self._take_back()
            future = self._timeline.drop_future()
            following = [v for v in future if v.label.kind == "clip"]
            if not following:
                for voice in future:  # put back what was dropped (pieces, a stand-in)
                    self._timeline.append(voice.audio, 0, voice.label)
                return False
            rest = future[future.index(following[0]) :]
            self._timeline.cut_in(rest[0].audio, max(self._frames(fade_s), 1), rest[0].label)
            for voice in rest[1:]:
                overlap = 0
                if voice.label.kind == "clip":
                    overlap = overlap_frames(
                        self._last_clip_frames, voice.audio.shape[0], self.chain.crossfade_fraction
                    )
                self._timeline.append(voice.audio, overlap, voice.label)
            return True

    def drop_future(self) -> list[Label]:
        """Drop the audio that has not started (and the crossfades into it); returns its labels."""
        with self._lock:
            return [v.label for v in self._timeline.drop_future()]

    def finish(self, fade_s: float) -> None:
        """Nothing more will be scheduled: fade the end over ``fade_s``, then end the program."""
        with self._lock:
            self._take_back()  # or a later command's take-back would undo it: no end, ever
            self._timeline.fade_tail(self._frames(fade_s))
            self._final = True

    def fade_out(self, fade_s: float) -> None:
        """End the program now: fade everything out over ``fade_s`` (at once when paused)."""
        with self._lock:
            self._take_back()
            if self._paused:  # nothing to fade: the listener hears silence already
                self._timeline.clear()
                self._paused = False
                self._pause.set(1.0)
            else:
                self._timeline.drop_future()
                self._timeline.fade_all(max(self._frames(fade_s), 1))
            self._final = True

    def reopen(self) -> None:
        """Undo :meth:`finish`: more audio will be scheduled after all (the plan grew)."""
        with self._lock:
            self._take_back()
            if self._active and self._end_frame is None:
                self._final = False

    def pause(self) -> bool:
        """Fade into a pause; ``False`` if already paused."""
        with self._lock:
            if self._paused:
                return False
            self._take_back()
            self._paused = True
            self._pause.set(0.0)
            return True

    def resume(self) -> bool:
        """Fade out of a pause; ``False`` if not paused."""
        with self._lock:
            if not self._paused:
                return False
            self._take_back()
            self._paused = False
            self._pause.set(1.0)
            return True

    def set_volume(self, volume: float) -> None:
        """Ramp the output volume to ``volume`` (0..1)."""
        with self._lock:
            self._take_back()
            self._volume.set(volume)

    def stop(self) -> None:
        """End the program at once, with no fade (the daemon fades before it stops)."""
        with self._lock:
            self._take_back()
            self._timeline.clear()
            self._active = False

    # ------------------------------------------------------------------ queries

    @property
    def volume(self) -> float:
        return self._volume.target

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def active(self) -> bool:
        """A program is playing (between :meth:`begin` and its end)."""
        return self._active

    def settled_frames(self, end_fade_frames: int = 0) -> int:
        """Frames from the render position on that nothing scheduled next can change: all that is
        scheduled once :meth:`finish` was called, else all but the last clip's final fraction (the
        longest crossfade the next clip may ask for) or, if longer, ``end_fade_frames`` (the fade
        a later :meth:`finish` will lay over the end)."""
        with self._lock:
            ahead = self._timeline.ahead()
            if self._final:
                return ahead
            reserve = int(self.chain.crossfade_fraction * self._last_clip_frames)
            return max(ahead - max(reserve, end_fade_frames), 0)

    def ahead_frames(self) -> int:
        """Scheduled audio from the render position on (not counting the ring)."""
        with self._lock:
            return self._timeline.ahead()

    def buffered_seconds(self) -> float:
        """Audio ready ahead of the play head: scheduled plus queued in the ring."""
        return (self.ahead_frames() + self.ring.available()) / self.sample_rate

    def playing(self, kind: VoiceKind = "clip") -> Label | None:
        """The label of the latest voice of ``kind`` that has started at the render position."""
        with self._lock:
            started = [
                v
                for v in self._timeline.voices
                if v.start <= self._timeline.position and v.label.kind == kind
            ]
        return max(started, key=lambda v: v.start).label if started else None

    def clip_at_command(self) -> Label | None:
        """The label of the last clip heard by the time a command given now is: a cut-in begins
        ``respond_s`` after what the sink has read (queued audio beyond is taken back, and a clip
        that starts there is dropped), not at the render position; without ``respond_s``, the clip
        at the render position (:meth:`playing`)."""
        if self._respond is None:
            return self.playing("clip")
        with self._lock:
            frame = self.ring.frames_read + self._respond
            label = self._heard
            for _, report in self._reports:  # rendered, not yet played: in output order
                if isinstance(report, Heard) and report.label.kind == "clip" and report.frame <= frame:
                    label = report.label
        return label

    def tail_label(self) -> Label | None:
        """The label of the voice that ends last (what plays when all else has)."""
        with self._lock:
            tail = self._timeline.tail
        return tail.label if tail is not None else None

    def heard(self) -> Label | None:
        """The label of the last clip the sink has played the start of (see :meth:`reports`)."""
        return self._heard

    def played_frames(self, read: int | None = None) -> int:
        """Program audio the sink has played (pauses excluded), to a block; ``read``: the sink's
        read position in output frames (default: everything rendered, offline)."""
        read = self._output_frames if read is None else read
        checkpoints = self._checkpoints
        with self._lock:
            while len(checkpoints) > 1 and checkpoints[1][0] <= read:
                checkpoints.popleft()
            position = checkpoints[0][1]
        return max(position - self._program_start, 0)

    def reports(self, read: int | None = None) -> list[Report]:
        """What the sink has played up to output frame ``read`` (default: everything rendered)."""
        read = self._output_frames if read is None else read
        out = []
        with self._lock:
            while self._reports and self._reports[0][1].frame <= read:
                _, report = self._reports.popleft()
                if isinstance(report, Heard) and report.label.kind == "clip":
                    self._heard = report.label
                out.append(report)
        return out

    # ------------------------------------------------------------------ rendering

    def fill(self) -> int:
        """Render blocks into the ring while it has room (the feeder thread); returns how many."""
        blocks = 0
        block = np.empty((self.block_size, self.channels), dtype=np.float32)
        while self.ring.space() >= self.block_size:
            started = time.perf_counter()
            with self._lock:
                flush = self._render(block)
            # only silence is queued before a program's first sound: drop it, so that it plays sooner
            self.ring.write(block, drop_unread=flush)
            self.render_seconds += time.perf_counter() - started
            self.render_frames += self.block_size
            blocks += 1
        return blocks

    def render(self, out: np.ndarray) -> None:
        """Render the next ``len(out)`` frames into ``out`` (offline, or a test stepping the deck)."""
        with self._lock:
            self._render(out)

    def _render(self, out: np.ndarray) -> bool:
        """One block (lock held); returns whether queued silence may be dropped from the ring."""
        if self._respond is not None:
            self._snapshot()
        frame = self._output_frames
        count = out.shape[0]
        self._output_frames += count
        if self._paused and self._pause.settled:
            out[:] = 0.0
            self._checkpoint()
            return False
        timeline = self._timeline
        flush = self._flush_ring and bool(timeline.voices)
        if flush:
            self._flush_ring = False
        if self._active and not self._final and not self._paused and self.bridge is not None:
            self._bridge_if_late(frame)
        first = timeline.position
        last_end = max((v.end for v in timeline.voices), default=first)
        for voice, offset in timeline.render(out):
            heard = Heard(frame + offset + self.latency, voice.label, voice.start - self._program_start)
            self._reports.append((frame, heard))
        if self._active:
            out[:] = self._processor.process(out)
            if self._final and not timeline.voices:
                if self._end_frame is None:  # the last sound, delayed by the limiter
                    self._end_frame = frame + max(last_end - first, 0) + self.latency
                    self._reports.append((frame, Ended(self._end_frame)))
                if self._output_frames >= self._end_frame:  # the filters' ringing ends with the program
                    out[max(self._end_frame - frame, 0) :] = 0.0
                    self._active = False
        else:
            out[:] = 0.0
        self._pause.apply(out)
        self._volume.apply(out)
        self._checkpoint()
        return flush

    def _snapshot(self) -> None:
        """Remember the state before this block, for :meth:`_take_back` (live playback only)."""
        horizon = self.ring.frames_read
        while len(self._snapshots) > 1 and self._snapshots[1].frame <= horizon:
            self._snapshots.popleft()  # played: nothing can go back there any more
        self._snapshots.append(
            _Snapshot(
                frame=self._output_frames,
                position=self._timeline.position,
                processor=self._processor.snapshot(),
                volume=(self._volume.current, self._volume.target),
                pause=(self._pause.current, self._pause.target, self._paused),
                program=(self._active, self._final, self._end_frame),
            )
        )

    def _take_back(self) -> None:
        """Take back the queued audio beyond ``respond_s`` from now and go back to where it began,
        so that the command about to be applied is heard that soon (lock held)."""
        if self._respond is None:
            return
        want = self.ring.frames_read + self._respond
        later = [snap for snap in self._snapshots if snap.frame >= want]
        if not later:
            return
        snap = later[0]
        if self.ring.retract(snap.frame) != snap.frame:
            return  # the sink got there first: too late to take anything back
        self._output_frames = snap.frame
        self._timeline.rewind(snap.position)
        self._processor.restore(snap.processor)
        self._volume.current, self._volume.target = snap.volume
        self._pause.current, self._pause.target, self._paused = snap.pause
        self._active, self._final, self._end_frame = snap.program
        # what the taken-back blocks reported will be reported again when they are rendered again
        self._reports = deque(item for item in self._reports if item[0] < snap.frame)
        while len(self._checkpoints) > 1 and self._checkpoints[-1][0] > snap.frame:
            self._checkpoints.pop()
        while self._snapshots and self._snapshots[-1].frame >= snap.frame:
            self._snapshots.pop()
        self.ring.writable.set()

    def _checkpoint(self) -> None:
        self._checkpoints.append((self._output_frames, self._timeline.position))
        if len(self._checkpoints) > 4096:  # nobody reads: keep it bounded
            self._checkpoints.popleft()

    def _bridge_if_late(self, frame: int) -> None:
        """Loop the end of the last voice when the next audio will not be there in time."""
        assert self.bridge is not None
        fade = self._frames(self.bridge.fade_s)
        ahead = self._timeline.ahead()
        tail = self._timeline.tail
        if not 0 < ahead <= fade + 2 * self.block_size or tail is None:
            return
        loop = tail.audio[-self._frames(self.bridge.seconds) :]
        fade = min(fade, loop.shape[0] // 2)
        index = tail.label.index
        self._timeline.append(loop, fade, Label("bridge", index, tail.label.payload))
        self._reports.append((frame, Bridged(frame, index, loop.shape[0] / self.sample_rate)))

    def _frames(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)


class OfflineOutput:
    """Drives a deck synchronously, the offline render's way: hands out the program's audio block
    by block as soon as no later clip can change it, without the limiter's leading delay and
    ending at the program's last sound.

    Parameters
    ----------
    deck : Deck
        A deck whose program has begun; the caller schedules clips on it.
    block_frames : int
        Frames rendered at a time (the output does not depend on it).
    end_fade_s : float
        The fade the program will end with (:meth:`Deck.finish`): its length is held back from
        rendering until the end is known.
    """

    def __init__(self, deck: Deck, block_frames: int = 16384, end_fade_s: float = 0.0) -> None:
        self.deck = deck
        self.block_frames = block_frames
        self._end_fade = round(end_fade_s * deck.sample_rate)
        self._skip = deck.latency  # leading frames of limiter delay
        self._end: int | None = None
        self._block = np.empty((block_frames, deck.channels), dtype=np.float32)

    def ready(self) -> Iterator[np.ndarray]:
        """The blocks that no later clip can change (what is scheduled, less the longest
        crossfade the next clip may ask for)."""
        while self.deck.settled_frames(self._end_fade) >= self.block_frames:
            yield from self._next()

    def rest(self) -> Iterator[np.ndarray]:
        """Everything up to the program's last sound; call after :meth:`Deck.finish`."""
        while self._end is None or self.deck.output_frames < self._end:
            yield from self._next()

    def _next(self) -> Iterator[np.ndarray]:
        start = self.deck.output_frames
        self.deck.render(self._block)
        for report in self.deck.reports():
            if isinstance(report, Ended):
                self._end = report.frame
        lo = min(self._skip, self.block_frames)
        self._skip -= lo
        hi = self.block_frames if self._end is None else min(self.block_frames, self._end - start)
        if hi > lo:
            yield self._block[lo:hi].copy()


__all__ = ["BridgePolicy", "Bridged", "Deck", "Ended", "Heard", "Label", "OfflineOutput", "Report", "Voice"]
