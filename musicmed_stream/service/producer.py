"""The producer: generates a session's clips ahead of the play head and schedules them on the deck.

One asyncio task per session asks the engine for the next segment's clip on the engine thread,
prepares it (:func:`~musicmed_stream.chain.to_output`) and schedules it on the
:class:`~musicmed_stream.player.deck.Deck`, keeping about ``playback.buffer_seconds`` of audio ahead.
It never returns while its session lives: when the plan is done it finishes the deck and waits,
because a re-target may give the plan more segments.

- **Streaming**: when a clip is needed at once (the first clip, a re-target, a late clip) and the
  engine streams (MusicGen), its pieces are prepared (:class:`~musicmed_stream.chain.ClipStreamer`)
  and played as they are decoded, so the first sound does not wait for the whole clip.
- **Failures**: a failed clip is tried again (``engine.retries`` times, with a doubling backoff);
  when the engine keeps failing, the built-in engine makes that segment, so the listener still
  travels the whole path; only when that fails too is the segment skipped. The deck bridges the gap.
- **Stand-ins**: with ``playback.bridge = "builtin"``, while a slow engine works on a segment and
  the audio ahead runs low, the built-in engine makes a stand-in clip of the same segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicmed_stream.chain import ChainConfig, ClipStreamer, conditioning_tail, piece_frames, to_output
from musicmed_stream.control.events import Bridge, ErrorReport, EventData
from musicmed_stream.engines.base import Clip, Continuation, Engine, clip_seed, stream_clip
from musicmed_stream.errors import GenerationCancelled, MusicMedError
from musicmed_stream.planner.types import Plan, Segment
from musicmed_stream.player.deck import Deck, Label

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a waiting producer looks at the deck (a wake-up comes sooner)
STANDIN = "standin"  # the payload of a built-in stand-in clip's label


@dataclass
class PlacedClip:
    """A clip on the deck (the payload of its label): its segment, what it continued from, and
    what the next clip continues from (``None`` while a streamed clip is still being made)."""

    segment: Segment
    used: Continuation | None
    next: Continuation | None = None
    engine: str = ""
    generate_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # the engine's facts (best-of scores, ...)


@dataclass
class Session:
    """A running session, as the producer and the daemon share it (on the event loop only)."""

    session_id: str
    plan: Plan
    seed: int
    on_end: str
    next_index: int = 0
    previous: Continuation | None = None
    generation: int = 0  # bumped by re-target, skip and stop: older results are dropped
    cut_fade_s: float | None = None  # cut the next clip in with this fade instead of appending
    final: bool = False  # the deck was told that no more clips come
    end_reason: str = "finished"
    current: PlacedClip | None = None  # the clip the listener hears
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    busy_since: float | None = None  # monotonic time the producer began the clip it works on
    stop_at: int | None = None  # sleep timer: program frames after which the session fades out
    placed_any: bool = False  # a clip of this session is on the deck (the first one streams)
    cancel: threading.Event | None = None
    task: asyncio.Task[None] | None = None

    def segment(self, index: int) -> Segment | None:
        """Segment ``index`` of the plan; past its end, the target held (``on_end = "hold"``)."""
        segments = self.plan.segments
        if index < len(segments):
            return segments[index]
        if self.on_end != "hold" or not segments:
            return None
        return hold_segment(segments[-1], index, self.plan.settings.crossfade_fraction)

    def halt(self) -> None:
        """Drop what is being made (a newer plan or a stop supersedes it)."""
        self.generation += 1
        if self.cancel is not None:
            self.cancel.set()


@dataclass(frozen=True)
class ProducerSettings:
    """What the producer needs of the configuration."""

    buffer_seconds: float = 45.0
    fade_seconds: float = 3.0
    bridge_seconds: float = 6.0
    bridge_fade_seconds: float = 1.0
    standins: bool = False
    stream: bool = True
    retries: int = 2
    retry_backoff_s: float = 0.5


class Producer:
    """Makes and schedules the clips of sessions.

    Parameters
    ----------
    engine : Engine
        The clip generator; called from the engine thread only.
    deck : Deck
    chain : ChainConfig
    settings : ProducerSettings
    emit : callable
        Delivers an event payload (called on the event loop).
    fallback : callable, optional
        Returns the built-in engine (made on first use) for failed segments and stand-ins; ``None``
        when the main engine is the built-in one.
    """

    def __init__(
        self,
        engine: Engine,
        deck: Deck,
        chain: ChainConfig,
        settings: ProducerSettings,
        emit: Callable[[EventData], None],
        fallback: Callable[[], Engine] | None = None,
    ) -> None:
        self.engine, self.deck, self.chain, self.settings = engine, deck, chain, settings
        self.emit = emit
        self.fallback = fallback
        self.rate, self.channels = deck.sample_rate, deck.channels
        self._engine_thread = _Worker("engine")
        self._fallback_thread = _Worker("fallback-engine")
        self._idle_waiters: list[asyncio.Future[None]] = []

    def close(self) -> None:
        self._engine_thread.close()
        self._fallback_thread.close()

    # ------------------------------------------------------------------ the task

    def start(self, session: Session) -> None:
        """Start (or restart) the session's producer task."""
        session.task = asyncio.create_task(self.run(session), name=f"producer-{session.session_id}")

    async def run(self, session: Session) -> None:
        """Generate and schedule clips until the session ends (cancelled by the daemon)."""
        while True:
            await self._wait_for_work(session)
            generation, index = session.generation, session.next_index
            segment = session.segment(index)
            if segment is None:  # the plan is done: end the music, and wait for a re-plan
                if not session.final:
                    self.deck.finish(self.settings.fade_seconds)
                    session.final = True
                continue
            session.busy_since = time.monotonic()
            try:
                placed = await self._make(session, segment, generation)
            finally:
                session.busy_since = None
            if placed is None or generation != session.generation:
                continue
            session.next_index = index + 1
            session.previous = placed.next
            if session.segment(index + 1) is None and session.on_end == "stop":
                self.deck.finish(self.settings.fade_seconds)
                session.final = True

    def has_work(self, session: Session) -> bool:
        """Whether the producer would act now: finish a plan that is done, or make a clip because a
        cut is pending or there is room ahead."""
        if session.ended.is_set():
            return False
        if session.segment(session.next_index) is None:
            return not session.final
        if session.cut_fade_s is not None:
            return True
        return self.deck.ahead_frames() <= self.settings.buffer_seconds * self.rate

    async def settled(self, session: Session) -> None:
        """Return once the producer has nothing to do (for stepping the daemon in tests)."""
        while session.task is not None and not session.task.done() and not session.ended.is_set():
            if session.idle.is_set() and not self.has_work(session):
                return
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            session.wake.set()
            # the producer may be cancelled (a stop) before it goes idle again: wait for either
            await asyncio.wait([waiter, session.task], return_when=asyncio.FIRST_COMPLETED)

    async def _wait_for_work(self, session: Session) -> None:
        while not self.has_work(session):
            session.idle.set()
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()
            session.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wake.wait(), POLL_S)
        session.idle.clear()

    # ------------------------------------------------------------------ one clip

    async def _make(self, session: Session, segment: Segment, generation: int) -> PlacedClip | None:
        """Make, prepare and schedule the clip of ``segment``; ``None`` if superseded or skipped.

        The engine gets ``1 + retries`` attempts with a doubling backoff; then the built-in engine
        (made on first need) gets one; if that fails too the segment is skipped."""
        previous = session.previous
        seed = clip_seed(session.seed, segment.index)
        engine: Engine | None = self.engine
        attempts = 1 + self.settings.retries
        while engine is not None:
            for attempt in range(attempts):
                if generation != session.generation:
                    return None
                try:
                    return await self._attempt(session, engine, segment, previous, seed, generation)
                except GenerationCancelled:
                    return None
                except Exception as exc:  # an engine may fail in any way; the session goes on
                    if generation != session.generation:
                        return None
                    last = attempt == attempts - 1
                    fallback = last and engine is self.engine and self.fallback is not None
                    then = (
                        "retrying"
                        if not last
                        else "the built-in engine takes over"
                        if fallback
                        else "skipped"
                    )
                    log.warning(
                        "%s engine failed on segment %d (attempt %d of %d, %s): %s",
                        engine.name,
                        segment.index,
                        attempt + 1,
                        attempts,
                        then,
                        exc,
                        exc_info=not isinstance(exc, MusicMedError),
                    )
                    where = f"{engine.name} engine, segment {segment.index}"
                    self.emit(ErrorReport(message=f"{exc} ({then})", where=where))
                    if not last:
                        await asyncio.sleep(self.settings.retry_backoff_s * 2**attempt)
            engine = self.fallback() if engine is self.engine and self.fallback is not None else None
            attempts = 1
        session.next_index = segment.index + 1  # every engine failed: the deck bridges, the path goes on
        return None

    async def _attempt(
        self,
        session: Session,
        engine: Engine,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        generation: int,
    ) -> PlacedClip | None:
        cancel = threading.Event()
        session.cancel = cancel
        placed = PlacedClip(segment, previous, engine=engine.name)
        # Streamed: the program's first clip and a cut-in, both heard as soon as they can be. Only
        # these, never a clip that is merely late: the choice must not depend on timing, or the
        # same seed would not give the same audio (the render streams the first clip too).
        urgent = session.cut_fade_s is not None or not session.placed_any
        if urgent and self.settings.stream and piece_frames(engine) is not None:
            return await self._stream(session, engine, placed, seed, cancel, generation)
        started = time.perf_counter()
        worker = self._engine_thread if engine is self.engine else self._fallback_thread
        pending = worker.submit(self._make_clip, engine, segment, previous, seed, cancel)
        if self.settings.standins and engine is self.engine and self.fallback is not None:
            await self._stand_in_while(session, pending, segment, seed, generation)
        audio, following, info = await pending
        if generation != session.generation:
            return None
        placed.next, placed.generate_s, placed.info = following, time.perf_counter() - started, info
        self._schedule(session, audio, Label("clip", segment.index, placed))
        return placed

    def _make_clip(
        self,
        engine: Engine,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        cancel: threading.Event,
    ) -> tuple[np.ndarray, Continuation, dict[str, Any]]:
        """Generate and prepare one whole clip (engine thread)."""
        clip = engine.generate(segment, previous, seed=seed, cancel=cancel)
        if cancel.is_set():
            raise GenerationCancelled(f"segment {segment.index} abandoned")
        chain = self.chain.for_engine(engine)
        prepared = to_output(clip.audio, clip.sample_rate, self.rate, self.channels, chain)
        return prepared.audio, self._continuation(clip), dict(clip.info)

    def _continuation(self, clip: Clip) -> Continuation:
        tail = conditioning_tail(clip.audio, clip.sample_rate, self.chain)
        return Continuation(tail=tail, sample_rate=clip.sample_rate, state=clip.state)

    def _schedule(self, session: Session, audio: np.ndarray, label: Label, frames: int | None = None) -> None:
        """Put a clip (or its first piece) on the deck: cut in, or after what is scheduled."""
        tail = self.deck.tail_label()
        if session.cut_fade_s is None and tail is not None and tail.payload == STANDIN:
            session.cut_fade_s = self.settings.bridge_fade_seconds  # the stand-in gives way
        if session.cut_fade_s is not None:
            self.deck.cut_in(audio, label, session.cut_fade_s, frames=frames)
            session.cut_fade_s = None
        else:
            self.deck.append(audio, label, frames=frames)
        session.placed_any = True

    async def _stream(
        self,
        session: Session,
        engine: Engine,
        placed: PlacedClip,
        seed: int,
        cancel: threading.Event,
        generation: int,
    ) -> PlacedClip | None:
        """Play the clip's pieces as the engine decodes them."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()
        segment = placed.segment
        started = time.perf_counter()
        streamer = ClipStreamer(engine.sample_rate, self.rate, self.channels, self.chain.for_engine(engine))

        def work() -> None:  # engine thread: decode, prepare, hand each piece to the event loop
            try:
                for item in stream_clip(engine, segment, placed.used, seed=seed, cancel=cancel):
                    if cancel.is_set():
                        raise GenerationCancelled(f"segment {segment.index} abandoned")
                    if isinstance(item, Clip):
                        rest = streamer.close()
                        placed.info = dict(item.info)
                        loop.call_soon_threadsafe(pieces.put_nowait, rest)
                        loop.call_soon_threadsafe(pieces.put_nowait, self._continuation(item))
                    else:
                        loop.call_soon_threadsafe(pieces.put_nowait, streamer.push(item))
            except BaseException as exc:  # handed over: raised on the event loop
                loop.call_soon_threadsafe(pieces.put_nowait, exc)

        self._engine_thread.submit_plain(work)
        expected = self._frames(segment.duration_s)
        first = True
        while True:
            item = await pieces.get()
            if isinstance(item, BaseException):
                raise item
            if generation != session.generation:
                cancel.set()
                return None
            if isinstance(item, Continuation):
                placed.next, placed.generate_s = item, time.perf_counter() - started
                return placed
            if item.shape[0] == 0:
                continue
            if first:
                self._schedule(session, item, Label("clip", segment.index, placed), frames=expected)
                first = False
            else:
                self.deck.append(item, Label("piece", segment.index, placed))

    async def _stand_in_while(
        self, session: Session, pending: asyncio.Future[Any], segment: Segment, seed: int, generation: int
    ) -> None:
        """While the main engine works on ``segment``, have the built-in engine make a clip of the
        same segment once the audio ahead runs low, and play it until the main clip is ready."""
        assert self.fallback is not None
        low = self._frames(max(2 * self.settings.bridge_seconds, 10.0))
        standin: asyncio.Future[Any] | None = None
        while not pending.done():
            await asyncio.wait([pending, *([standin] if standin else [])], timeout=0.1)
            if generation != session.generation:
                return
            if standin is None and self.deck.ahead_frames() < low:
                fallback = self.fallback()
                standin = self._fallback_thread.submit(
                    self._make_clip, fallback, segment, None, seed, threading.Event()
                )
            elif standin is not None and standin.done() and not pending.done():
                if standin.exception() is not None:
                    log.warning("built-in stand-in clip failed: %s", standin.exception())
                    return
                audio, _, _ = standin.result()
                self.deck.append(
                    audio, Label("bridge", segment.index, STANDIN), fade_s=self.settings.bridge_fade_seconds
                )
                reason = f"built-in clip while the {self.engine.name} engine is late"
                self.emit(Bridge(index=segment.index, seconds=audio.shape[0] / self.rate, reason=reason))
                return

    def _frames(self, seconds: float) -> int:
        return round(seconds * self.rate)


class _Worker:
    """One thread that runs jobs in order (the engine is not thread-safe)."""

    def __init__(self, name: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def submit_plain(self, fn: Callable[[], None]) -> None:
        self._pool.submit(fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def hold_segment(last: Segment, index: int, crossfade_fraction: float) -> Segment:
    """Segment ``index`` past the end of a plan: the last segment again, later (one clip step,
    a clip less its crossfade overlap, per segment)."""
    step = last.duration_s * (1.0 - crossfade_fraction)
    return dataclasses.replace(last, index=index, start_s=last.start_s + (index - last.index) * step)


def extended(plan: Plan, from_index: int) -> Plan:
    """``plan`` with held segments appended so that a re-plan from ``from_index`` has room to move
    (transition and settle clips); unchanged when the plan is long enough."""
    wanted = from_index + max(4, plan.settings.settle_clips + 3)
    if len(plan.segments) >= wanted or not plan.segments:
        return plan
    fraction = plan.settings.crossfade_fraction
    extra = tuple(hold_segment(plan.segments[-1], i, fraction) for i in range(len(plan.segments), wanted))
    return dataclasses.replace(plan, segments=plan.segments + extra)


def resized(plan: Plan, count: int) -> Plan:
    """``plan`` with exactly ``count`` segments: held segments appended, or the last ones cut."""
    if count <= len(plan.segments):
        return dataclasses.replace(plan, segments=plan.segments[:count])
    fraction = plan.settings.crossfade_fraction
    extra = tuple(hold_segment(plan.segments[-1], i, fraction) for i in range(len(plan.segments), count))
    return dataclasses.replace(plan, segments=plan.segments + extra)


__all__ = ["PlacedClip", "Producer", "ProducerSettings", "Session", "extended", "hold_segment", "resized"]
