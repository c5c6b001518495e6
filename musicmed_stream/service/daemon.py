"""The daemon: a facade over the deck, the producer, the event stream and the session record.

Three activities, each on its own side of one boundary, the :class:`~musicmed_stream.player.deck.Deck`:

- the **producer** (:mod:`~musicmed_stream.service.producer`, an asyncio task) makes the next clips on
  the engine thread and schedules them on the deck, about ``playback.buffer_seconds`` ahead;
- the **feeder** (a thread) calls :meth:`Deck.fill`, which renders blocks into the ring;
- the **sink** drains the ring (a PortAudio callback, a recording, or nothing) and only copies.

The ring is short on purpose: every command (volume, pause, skip, re-target, stop) is applied at the
deck's render position, at most ``playback.ring_seconds`` ahead of what is heard. What depends on
what is heard (``segment_started``, ``session_ended``) comes from the deck's reports, read by the
monitor task as the sink's read position passes them. Session commands (start, re-target, skip,
stop) are serialized by one lock: one session, one producer.

Re-targeting: the rest of the path is re-planned from the segment playing now, clips scheduled for
the old path are dropped and the clip being generated is cancelled; the first clip of the new path
is made at once (streamed when the engine streams) and cut in with a short crossfade
(``playback.retarget_fade_seconds``) instead of waiting for the current clip to end.

With a :class:`~musicmed_stream.player.sinks.ManualSink` nothing runs by itself: :meth:`Daemon.play`
steps the audio path block by block (tests and benchmarks), waiting for the producer in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from musicmed_stream.bounds import MAX_CLIPS, MAX_MINUTES, Minutes, check
from musicmed_stream.chain import to_output
from musicmed_stream.control.api import CheckInResult, Replanned, SessionInfo, StartOptions, State, Status
from musicmed_stream.control.events import Bridge as BridgeEvent
from musicmed_stream.control.events import (
    BufferLevel,
    Event,
    EventData,
    Paused,
    PlanChanged,
    Resumed,
    SegmentStarted,
    SessionEnded,
    SessionStarted,
    Underrun,
    VolumeChanged,
)
from musicmed_stream.control.events import ErrorReport as ErrorEvent
from musicmed_stream.emotion import TagMapping, check_va, load_tag_mapping, resolve_state
from musicmed_stream.emotion.point import VA
from musicmed_stream.engines.base import Engine
from musicmed_stream.errors import MusicMedError
from musicmed_stream.jsonable import to_jsonable
from musicmed_stream.planner import (
    Plan,
    PlanSettings,
    TagStatistics,
    builtin_palette,
    clip_grid,
    load_jamendo_statistics,
    plan_session,
    replan,
    validate_settings,
)
from musicmed_stream.player.deck import Bridged, BridgePolicy, Deck, Ended, Heard
from musicmed_stream.player.sinks import Sink
from musicmed_stream.service.config import Config, event_log_path
from musicmed_stream.service.eventlog import EventLog
from musicmed_stream.service.history import CHECKIN_WINDOW_S, HISTORY_FILE, History
from musicmed_stream.service.producer import (
    PlacedClip,
    Producer,
    ProducerSettings,
    Session,
    extended,
    resized,
)
from musicmed_stream.service.state import SessionRecord, StateStore

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 256
MONITOR_PERIOD = 0.02
SWITCH_INTERVAL = 0.0005  # seconds; see Daemon.start
WATCHDOG_MIN_S = 60.0  # a producer busy this long (or four clip lengths) while bridges play is restarted


class SessionError(MusicMedError):
    """A command that does not fit the daemon's state or has a bad value."""


class Daemon:
    """The music-medicine daemon; implements :class:`~musicmed_stream.control.api.SessionController`.

    Parameters
    ----------
    config : Config
        Settings (session defaults, playback, chain).
    engine : Engine
        Clip generator; called from one worker thread.
    sink : Sink
        Output, started by :meth:`start`.
    state_dir : Path, optional
        Where the session is saved for crash recovery; ``None`` disables it. A relative
        ``service.event_log`` is written there.
    statistics : TagStatistics, optional
        Instrument and genre statistics for the planner (default: ``session.jamendo``, else the
        built-in palette); an adapter's own, when the wiring has one.
    mapping : TagMapping, optional
        Mood-tag mapping (default: ``session.mapping``, else the built-in one).
    fallback : callable, optional
        Makes the built-in engine that covers for a failing or slow main engine.
    """

    def __init__(
        self,
        config: Config,
        engine: Engine,
        sink: Sink,
        state_dir: Path | None = None,
        *,
        statistics: TagStatistics | None = None,
        mapping: TagMapping | None = None,
        fallback: Any = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.sink = sink
        self.state_dir = state_dir
        self.sample_rate = sink.sample_rate
        playback = config.playback
        self.deck = Deck(
            sink.sample_rate,
            sink.channels,
            config.chain,
            block_size=sink.block_size,
            ring_seconds=playback.ring_seconds,
            volume=min(playback.volume, playback.max_volume),
            volume_ramp_s=playback.volume_ramp_seconds,
            pause_ramp_s=playback.pause_ramp_seconds,
            bridge=BridgePolicy(playback.bridge_seconds, playback.bridge_fade_seconds),
            respond_s=playback.respond_seconds,
        )
        self._fallback_engine: Engine | None = None
        self._make_fallback = fallback
        self.producer = Producer(
            engine,
            self.deck,
            config.chain,
            _producer_settings(config),
            self._emit,
            fallback=self._fallback if engine.name != "builtin" else None,
        )
        self._statistics = statistics
        self._mapping = mapping
        self._fixed_planning = statistics is not None, mapping is not None
        self._session: Session | None = None
        self._lifecycle = asyncio.Lock()
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._store = StateStore(state_dir) if state_dir is not None else None
        self._history: History | None = None  # opened by start(), in the state folder
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._event_log: EventLog | None = None
        self._closing = threading.Event()
        self._feeder: threading.Thread | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._warmup: asyncio.Future[None] | None = None
        self._switch_interval = sys.getswitchinterval()
        self._underruns = (0, 0)
        self._last_level = 0  # output frame of the last buffer_level event
        self._manual = bool(getattr(sink, "manual", False))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the feeder, the sink and the monitor; resume a saved session if configured."""
        log_path = event_log_path(self.config, self.state_dir)
        if log_path is not None:
            self._event_log = EventLog(log_path)
            log.info("event log: %s", log_path)
        if hasattr(self.sink, "idle"):  # a recording skips the silence between sessions
            self.sink.idle = lambda: not self.deck.active
        if self.state_dir is not None:
            try:
                self._history = await asyncio.to_thread(History, self.state_dir / HISTORY_FILE)
            except (OSError, sqlite3.Error) as exc:
                log.error("listening history unavailable in %s: %s (playback goes on)", self.state_dir, exc)
        if not self._manual:
            # The feeder releases the GIL at every numpy call; with the default 5-ms switch
            # interval a busy engine thread would keep it that long each time.
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
            self._feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)
            self._feeder.start()
            # the sink's first reads find audio, not an empty ring
            await asyncio.to_thread(self.deck.ring.wait_for, 4 * self.sink.block_size, 5.0)
        await asyncio.to_thread(self.sink.start, self.deck.ring)
        if not self._manual:
            self._monitor = asyncio.create_task(self._watch(), name="monitor")
        await self._planning()  # once, so that starting a session does not wait for it
        if self.config.service.warmup:
            self._warmup = asyncio.get_running_loop().run_in_executor(None, self._warm_up)
        if self._store is not None and self.config.service.resume:
            await self._resume_saved()

    async def close(self, fade_seconds: float | None = None) -> None:
        """Fade out a running session, then stop the sink and the threads."""
        await self.stop(fade_seconds)
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await asyncio.to_thread(self.sink.stop)  # before the feeder, so that nothing underruns
        self._closing.set()
        self.deck.ring.writable.set()
        if self._feeder is not None:
            await asyncio.to_thread(self._feeder.join)
        self.producer.close()
        await asyncio.to_thread(self._io.shutdown, wait=True)
        if self._history is not None:
            self._history.close()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
        if self._event_log is not None:
            await asyncio.to_thread(self._event_log.close)
        if not self._manual:
            sys.setswitchinterval(self._switch_interval)

    def healthy(self) -> bool:
        """Whether the audio path (feeder, sink) and the monitor are alive (for the watchdog: an
        unhealthy daemon stops pinging and systemd restarts it)."""
        if self._manual:
            return self.sink.healthy()
        feeder_ok = self._feeder is not None and self._feeder.is_alive()
        monitor_ok = self._monitor is not None and not self._monitor.done()
        return feeder_ok and monitor_ok and self.sink.healthy()

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration: session defaults, fades, buffering and volume."""
        mapping_fixed, statistics_fixed = self._fixed_planning[1], self._fixed_planning[0]
        if config.session.mapping != self.config.session.mapping and not mapping_fixed:
            self._mapping = None  # reloaded on next use
        if config.session.jamendo != self.config.session.jamendo and not statistics_fixed:
            self._statistics = None
        self.config = self.config.replace(session=config.session, playback=config.playback)
        self.producer.settings = _producer_settings(self.config)
        self.deck.set_volume(min(self.deck.volume, config.playback.max_volume))

    # ------------------------------------------------------------------ SessionController

    async def start_session(self, options: StartOptions) -> SessionInfo:
        """Plan a session from ``options`` (``None`` fields: configured defaults) and start it."""
        defaults = self.config.session
        statistics, mapping = await self._planning()
        start_va, start_label = self._resolve(await self._start_state(options.start), "start", mapping)
        target_va, target_label = self._resolve(options.target, "target", mapping)
        settings = PlanSettings(
            minutes=_pick(options.minutes, defaults.minutes),
            clip_seconds=_pick(options.clip_seconds, defaults.clip_seconds),
            path=_pick(options.path, defaults.path),
            temperature=_pick(options.temperature, defaults.temperature),
            seed=_pick(options.seed, defaults.seed),
            crossfade_fraction=self.config.chain.crossfade_fraction,  # the clip grid the deck plays
            exclude_genres=tuple(defaults.exclude_genres),  # the clinical palette (docs/planner.md)
            exclude_instruments=tuple(defaults.exclude_instruments),
        )
        try:
            validate_settings(settings, statistics)
        except MusicMedError as exc:
            raise SessionError(str(exc)) from None
        count = len(clip_grid(settings))
        if count > defaults.max_segments:
            raise SessionError(
                f"{settings.minutes:g} minutes of {settings.clip_seconds:g}-s clips is {count} clips; "
                f"at most {defaults.max_segments} (session.max_segments): choose longer clips"
            )
        plan = plan_session(start_va, target_va, settings, statistics, mapping=mapping)
        plan = dataclasses.replace(plan, start_label=start_label, target_label=target_label)
        async with self._lifecycle:
            playing = self._session
            if playing is not None and not options.replace and playing.end_reason != "stopped":
                where = f"{_clock(self.played_seconds())} of {_clock(playing.plan.duration_s)}"
                raise SessionError(
                    f"a session plays ({playing.plan.start_label} -> {playing.plan.target_label}, {where}): "
                    "lead it elsewhere with set_target, or start with replace to end it first"
                )
            await self._stop(self.config.playback.skip_fade_seconds)
            session = Session(
                session_id=uuid.uuid4().hex[:12], plan=plan, seed=settings.seed, on_end=defaults.on_end
            )
            self._begin(session)
        return SessionInfo(session.session_id, plan.to_dict())

    async def set_target(self, target: State) -> Replanned:
        """Re-plan the rest of the session toward ``target`` from where the listener is now; the
        first clip of the new path is cut in at once."""
        statistics, mapping = await self._planning()
        target_va, label = self._resolve(target, "target", mapping)
        async with self._lifecycle:
            session = self._require_session()
            placed = self._playing(session, at_command=True)  # where the cut-in will begin
            from_index = 0 if placed is None else placed.segment.index + 1
            position = session.plan.start if placed is None else placed.segment.va
            plan = extended(session.plan, from_index)
            plan = self._replan(plan, from_index, position, target_va, statistics, mapping)
            plan = dataclasses.replace(plan, target_label=label)
            self._adopt(session, plan, from_index, None if placed is None else placed.next, cut=True)
        log.info("re-targeted to %s from segment %d", label, from_index)
        self._emit(PlanChanged(from_index=from_index, plan=plan.to_dict(), reason="target"))
        self._record(
            History.target_changed,
            session.session_id,
            target_label=label,
            target=(target_va.valence, target_va.arousal),
        )
        return Replanned(from_index, plan.to_dict())

    async def extend(self, minutes: float) -> Replanned:
        """Make the session ``minutes`` longer (negative: shorter). What is scheduled plays on; the
        rest of the path is re-planned over the new length, toward the same target."""
        statistics, mapping = await self._planning()
        async with self._lifecycle:
            session = self._require_session()
            old = session.plan
            total = min(max(old.settings.minutes + minutes, 0.0), MAX_MINUTES)
            settings = dataclasses.replace(old.settings, minutes=total)
            wanted = len(clip_grid(settings)) if total > 0 else 0
            playing = self._playing(session)
            heard = -1 if playing is None else playing.segment.index  # -1: no clip on the deck yet
            scheduled = max(session.next_index, heard + 1)
            keep_scheduled = wanted > scheduled  # shortened below what is scheduled: re-plan from now
            from_index = scheduled if keep_scheduled else heard + 1
            count = max(wanted, from_index + 1 + old.settings.settle_clips)
            if count > self.config.session.max_segments:
                raise SessionError(
                    f"{total:g} minutes would be {count} clips; at most "
                    f"{self.config.session.max_segments} (session.max_segments)"
                )
            if count - 1 < from_index or count > MAX_CLIPS:
                raise SessionError(f"the session cannot be {total:g} minutes long from here")
            anchor = old.segments[min(from_index, len(old.segments)) - 1] if from_index else None
            position = old.start if anchor is None else anchor.va
            plan = dataclasses.replace(resized(old, count), settings=settings)
            plan = self._replan(plan, from_index, position, old.target, statistics, mapping)
            plan = dataclasses.replace(plan, target_label=old.target_label)
            previous = session.previous if keep_scheduled else None if playing is None else playing.next
            self._adopt(session, plan, from_index, previous, cut=False, drop=not keep_scheduled)
        log.info(
            "session %s now %.1f min (%+g), re-planned from segment %d",
            session.session_id,
            total,
            minutes,
            from_index,
        )
        self._emit(PlanChanged(from_index=from_index, plan=plan.to_dict(), reason="length"))
        return Replanned(from_index, plan.to_dict())

    async def sleep_timer(self, minutes: float | None) -> float | None:
        """Fade the session out once ``minutes`` more of it have played (``None``: cancel)."""
        session = self._require_session()
        if minutes is None:
            session.stop_at = None
            return None
        check("minutes", Minutes, minutes)
        played = self.deck.played_frames(self.deck.ring.frames_read)
        session.stop_at = played + round(minutes * 60 * self.sample_rate)
        log.info("sleep timer: the session fades out in %.1f min", minutes)
        return minutes * 60.0

    async def check_in(self, moment: Literal["before", "after"], point: VA) -> CheckInResult:
        """Store how the listener feels (before or after a session) in the listening history."""
        if self._history is None:
            raise SessionError("the listening history needs a state folder (service.state_dir)")
        va = check_va(point, "check-in")
        session = self._session
        current = session.session_id if session is not None and session.end_reason != "stopped" else None
        # on the history's own thread, after what the daemon wrote before (a session's end)
        loop = asyncio.get_running_loop()
        given = await loop.run_in_executor(
            self._io, self._history.check_in, moment, va.valence, va.arousal, current
        )
        return CheckInResult(given, moment, va.valence, va.arousal)

    async def history(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest sessions of the listening history, newest first, with their check-ins."""
        if self._history is None:
            raise SessionError("the listening history needs a state folder (service.state_dir)")
        entries = await asyncio.get_running_loop().run_in_executor(self._io, self._history.sessions, limit)
        return [dataclasses.asdict(entry) for entry in entries]

    async def pause(self) -> None:
        self._require_session()
        if self.deck.pause():
            self._emit(Paused())

    async def resume(self) -> None:
        self._require_session()
        if self.deck.resume():
            self._emit(Resumed())

    async def skip(self) -> None:
        """Crossfade into the next segment now (or as soon as its clip is ready)."""
        async with self._lifecycle:
            session = self._require_session()
            if not self.deck.skip(self.config.playback.skip_fade_seconds):
                session.cut_fade_s = self.config.playback.skip_fade_seconds
                session.wake.set()

    async def stop(self, fade_seconds: float | None = None) -> None:
        """Fade the session out over ``fade_seconds`` (default from config) and end it."""
        async with self._lifecycle:
            await self._stop(fade_seconds)

    async def set_volume(self, volume: float) -> float:
        """Set the output volume (capped at ``playback.max_volume``); returns the volume in effect."""
        if isinstance(volume, bool) or not isinstance(volume, int | float) or not 0.0 <= volume <= 1.0:
            raise SessionError(f"volume must be within 0..1, got {volume!r}")
        effective = min(float(volume), self.config.playback.max_volume)
        self.deck.set_volume(effective)
        self._emit(VolumeChanged(volume=effective))
        return effective

    def status(self, include_plan: bool = False) -> Status:
        """Where the daemon stands; the running plan (up to ``session.max_segments`` segments)
        only with ``include_plan``, so that a status stays small."""
        session = self._session
        common = {
            "volume": self.deck.volume,
            "max_volume": self.config.playback.max_volume,
            "buffer_s": self.deck.buffered_seconds(),
            "presets": [
                preset.model_dump(by_alias=True, exclude_none=True) for preset in self.config.presets
            ],
        }
        if session is None:
            return Status(state="idle", **common)
        placed = session.current
        segment = placed.segment if placed else None
        stopping = session.final and session.end_reason == "stopped"
        played, total = self.played_seconds(), session.plan.duration_s
        tags = {k: getattr(segment, k) if segment else None for k in ("valence", "arousal", "emotion")}
        tags |= {k: getattr(segment, k) if segment else None for k in ("mood", "instrument", "genre")}
        return Status(
            state="stopping" if stopping else "paused" if self.deck.paused else "playing",
            session_id=session.session_id,
            segment_index=segment.index if segment else None,
            segment_count=len(session.plan.segments),
            prompt=segment.prompt if segment else None,
            start_label=session.plan.start_label,
            target_label=session.plan.target_label,
            played_s=played,
            total_s=total,
            remaining_s=max(total - played, 0.0),
            sleep_timer_s=self._sleep_left(session),
            plan=session.plan.to_dict() if include_plan else None,
            **tags,
            **common,
        )

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    # ------------------------------------------------------------------ measurements

    def played_seconds(self) -> float:
        """Session audio the sink has played (pauses excluded), to a block."""
        if self._session is None:
            return 0.0
        return self.deck.played_frames(self.deck.ring.frames_read) / self.sample_rate

    # ------------------------------------------------------------------ stepping (manual sink)

    async def settled(self) -> None:
        """Wait until the producer has nothing to do."""
        session = self._session
        if session is not None:
            await self.producer.settled(session)

    async def play(self, seconds: float, *, wait: bool = True) -> None:
        """Play ``seconds`` of output through a :class:`~musicmed_stream.player.sinks.ManualSink`,
        block by block; with ``wait`` the producer catches up before every block (no bridges, no
        underruns: the engine is as fast as the audio needs)."""
        pull = self.sink.pull  # type: ignore[attr-defined]
        frames = round(seconds * self.sample_rate)
        done = 0
        while done < frames:
            if wait:
                await self.settled()
            self.deck.fill()
            done += pull().shape[0]
            self._poll()
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ session internals

    def _begin(self, session: Session) -> None:
        self.deck.begin()
        self._underruns = self.sink.counters()  # a session reports only its own
        self._session = session
        self._last_level = self.deck.output_frames
        plan = session.plan
        log.info(
            "session %s: %s -> %s, %d segments",
            session.session_id,
            plan.start_label,
            plan.target_label,
            len(plan.segments),
        )
        self._emit(SessionStarted(session_id=session.session_id, plan=plan.to_dict()))
        recording = getattr(self.sink, "path", None)
        written = getattr(self.sink, "frames_written", None)
        self._record(
            History.session_started,
            session.session_id,
            start_label=plan.start_label,
            target_label=plan.target_label,
            start=(plan.start.valence, plan.start.arousal),
            target=(plan.target.valence, plan.target.arousal),
            planned_s=plan.duration_s,
            recording=None if recording is None else str(recording),
            recording_offset_s=None if written is None else written / self.sample_rate,
        )
        self.producer.start(session)

    async def _stop(self, fade_seconds: float | None) -> None:
        """End the session with a fade (lifecycle lock held)."""
        session = self._session
        if session is None:
            return
        fade = self.config.playback.fade_seconds if fade_seconds is None else fade_seconds
        if not 0 <= fade <= 60:
            raise SessionError(f"fade_seconds must be within 0..60, got {fade}")
        self._halt_producer(session)
        if session.end_reason != "stopped":
            session.end_reason = "stopped"
            session.final = True
            self.deck.fade_out(fade)
        if self._manual:  # step the audio through the fade (bounded: a fade is at most a minute)
            for _ in range(round((fade + 5.0) * self.sample_rate / self.sink.block_size)):
                if session.ended.is_set():
                    return
                await self.play(self.sink.block_size / self.sample_rate, wait=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.ended.wait(), timeout=fade + 5.0)
        if not session.ended.is_set():  # the sink is stuck: end it here
            log.warning("session %s did not fade out in time; ending it", session.session_id)
            self.deck.stop()
            self._end_session(session)

    def _replan(
        self, plan: Plan, from_index: int, position: VA, target: VA, statistics: Any, mapping: Any
    ) -> Plan:
        """``replan`` with the clinical palette as configured now (a SIGHUP that changes it applies
        to re-plans)."""
        session_defaults = self.config.session
        palette = {k: tuple(getattr(session_defaults, k)) for k in ("exclude_genres", "exclude_instruments")}
        plan = dataclasses.replace(plan, settings=dataclasses.replace(plan.settings, **palette))
        return replan(plan, from_index, position, target, statistics, mapping=mapping)

    def _adopt(
        self,
        session: Session,
        plan: Plan,
        from_index: int,
        previous: Any,
        *,
        cut: bool,
        drop: bool = True,
    ) -> None:
        """Make ``plan`` the session's from ``from_index`` on (lifecycle lock held): what was being
        made is dropped and, with ``drop``, what was scheduled but not started; with ``cut`` the
        next clip cuts in at once."""
        session.halt()
        if drop:
            self.deck.drop_future()
        self.deck.reopen()
        session.plan = plan
        session.next_index = from_index
        session.previous = previous
        session.cut_fade_s = self.config.playback.retarget_fade_seconds if cut else None
        session.final = False
        self._ensure_producer(session)
        session.wake.set()

    def _record(self, method: Any, *args: Any, **kwargs: Any) -> None:
        """Write to the listening history off the event loop (a failure is logged there, once)."""
        if self._history is not None:
            self._io.submit(method, self._history, *args, **kwargs)

    def _require_session(self) -> Session:
        session = self._session
        if session is None or (session.final and session.end_reason == "stopped"):
            raise SessionError("no session is playing; start one first")
        return session

    def _halt_producer(self, session: Session) -> None:
        session.halt()
        if session.task is not None:
            session.task.cancel()

    def _ensure_producer(self, session: Session) -> None:
        """(Re)start the producer if it is not running (it never returns by itself)."""
        if session.task is None or session.task.done():
            if session.task is not None and not session.task.cancelled() and session.task.exception():
                log.error("producer of session %s failed: %s", session.session_id, session.task.exception())
            self.producer.start(session)

    def _playing(self, session: Session, *, at_command: bool = False) -> PlacedClip | None:
        """The clip at the deck's render position (else the one heard): where a re-plan starts;
        ``at_command``: the clip heard where a command given now lands (a cut-in's start)."""
        label = self.deck.clip_at_command() if at_command else self.deck.playing("clip")
        if label is not None and isinstance(label.payload, PlacedClip):
            return label.payload
        return session.current

    async def _planning(self) -> tuple[TagStatistics, TagMapping]:
        """The planner's statistics and tag mapping, loaded once."""
        if self._mapping is None:
            self._mapping = load_tag_mapping(self.config.session.mapping or None)
        if self._statistics is None:
            folder = self.config.session.jamendo
            if folder and Path(folder).expanduser().is_dir():
                self._statistics = await asyncio.to_thread(load_jamendo_statistics, folder)
            else:
                log.info("MTG-Jamendo metadata not found at %r: planning with the built-in palette", folder)
                self._statistics = builtin_palette()
        return self._statistics, self._mapping

    async def _start_state(self, start: State | None) -> State:
        """Where a session starts: as asked; else where the listener said they are (a "before"
        check-in of the last half hour); else ``[session] from``."""
        if start is not None:
            return start
        if self._history is not None:
            since = time.time() - CHECKIN_WINDOW_S
            loop = asyncio.get_running_loop()
            felt = await loop.run_in_executor(self._io, self._history.recent_checkin, "before", since)
            if felt is not None:
                return VA(felt.valence, felt.arousal)
        return self.config.session.start

    def _resolve(self, spec: State, what: str, mapping: TagMapping) -> tuple[VA, str]:
        if not isinstance(spec, str | VA):
            raise SessionError(f"{what} must be an emotion name, a mood tag or a point")
        try:
            return resolve_state(spec, mapping=mapping)
        except MusicMedError as exc:
            raise SessionError(str(exc)) from None

    def _fallback(self) -> Engine:
        if self._fallback_engine is None:
            if self._make_fallback is not None:
                self._fallback_engine = self._make_fallback()
            else:
                from musicmed_stream.engines.builtin import BuiltinEngine

                options = self.config.engine.builtin.engine_options(self.config.chain.crossfade_fraction)
                self._fallback_engine = BuiltinEngine(**options)
        return self._fallback_engine

    def _warm_up(self) -> None:
        """Make a short clip of the default session's first segment, so that lazy imports and the
        engine's caches (instrument templates, kernels) are ready before the first session."""
        defaults = self.config.session
        try:
            seconds = min(defaults.clip_seconds, 8.0)
            settings = PlanSettings(minutes=seconds / 60, clip_seconds=seconds, seed=defaults.seed)
            plan = plan_session(
                defaults.start, defaults.target, settings, self._statistics, mapping=self._mapping
            )
            started = time.perf_counter()
            clip = self.engine.generate(plan.segments[0], None, seed=defaults.seed, cancel=threading.Event())
            # the chain too: its first use imports noisereduce (and torch), seconds on a small box
            chain = self.config.chain.for_engine(self.engine)
            to_output(clip.audio, clip.sample_rate, self.sample_rate, self.deck.channels, chain)
            log.info("engine and chain warmed up in %.2f s", time.perf_counter() - started)
        except Exception as exc:  # a warm-up failure only costs speed; the session reports real errors
            log.warning("engine warm-up failed: %s", exc)

    # ------------------------------------------------------------------ feeder thread

    def _feed(self) -> None:
        """Keep the ring filled with processed blocks (runs on its own thread)."""
        ring = self.deck.ring
        while not self._closing.is_set():
            ring.writable.clear()
            if self.deck.fill() == 0:
                ring.writable.wait(0.05)

    # ------------------------------------------------------------------ monitor (event loop)

    async def _watch(self) -> None:
        """Announce what the sink has played; report underruns and the buffer level."""
        while True:
            await asyncio.sleep(MONITOR_PERIOD)
            try:
                self._poll()
            except Exception:  # the monitor must outlive a bug in one announcement
                log.exception("monitor step failed")

    def _poll(self) -> None:
        read = self.deck.ring.frames_read
        for report in self.deck.reports(read):
            self._announce(report)
        blocks, frames = self.sink.counters()
        if frames > self._underruns[1]:
            if self._session is not None:
                self._emit(Underrun(frames=frames - self._underruns[1]))
            self._underruns = (blocks, frames)
        session = self._session
        if session is None:
            return
        period = self.config.playback.buffer_event_seconds * self.sample_rate
        if read - self._last_level >= period:
            self._last_level = read
            target = self.config.playback.buffer_seconds
            self._emit(BufferLevel(seconds=self.deck.buffered_seconds(), target_seconds=target))
        self._sleep_timer(session)
        self._watchdog(session)

    def _sleep_left(self, session: Session) -> float | None:
        if session.stop_at is None:
            return None
        left = session.stop_at - self.deck.played_frames(self.deck.ring.frames_read)
        return max(left, 0) / self.sample_rate

    def _sleep_timer(self, session: Session) -> None:
        """The sleep timer ran out: fade the session out (once)."""
        left = self._sleep_left(session)
        if left is not None and left <= 0 and session.end_reason != "stopped":
            session.stop_at = None
            log.info("sleep timer: fading the session out")
            asyncio.get_running_loop().create_task(self.stop())

    def _watchdog(self, session: Session) -> None:
        """Restart a producer that died, or that makes no progress while the listener hears bridges."""
        if session.ended.is_set() or (session.final and session.end_reason == "stopped"):
            return
        limit = max(4 * session.plan.settings.clip_seconds, WATCHDOG_MIN_S)
        stuck = session.busy_since is not None and time.monotonic() - session.busy_since > limit
        starving = self.deck.ahead_frames() < (self.config.playback.bridge_seconds + 2) * self.sample_rate
        dead = session.task is None or session.task.done()
        if dead or (stuck and starving):
            why = "stopped" if dead else f"made no progress for {limit:.0f} s"
            log.error("producer of session %s %s; restarting it", session.session_id, why)
            self._emit(ErrorEvent(message=f"producer {why}; restarted", where="producer watchdog"))
            self._halt_producer(session)
            session.busy_since = None
            session.task = None
            self._ensure_producer(session)

    def _announce(self, report: Heard | Bridged | Ended) -> None:
        session = self._session
        if session is None:
            return
        if isinstance(report, Ended):
            self._end_session(session)
        elif isinstance(report, Bridged):
            self._emit(
                BridgeEvent(index=report.index, seconds=report.seconds, reason="next clip not ready in time")
            )
        elif report.label.kind == "clip" and isinstance(report.label.payload, PlacedClip):
            self._segment_started(session, report.label.payload, report.position)

    def _segment_started(self, session: Session, placed: PlacedClip, position: int) -> None:
        session.current = placed
        segment = placed.segment
        log.info("segment %d started: %s", segment.index, segment.prompt)
        self._emit(
            SegmentStarted(
                index=segment.index,
                valence=segment.valence,
                arousal=segment.arousal,
                emotion=segment.emotion,
                mood=segment.mood,
                instrument=segment.instrument,
                genre=segment.genre,
                prompt=segment.prompt,
                start_s=position / self.sample_rate,
                played_s=position / self.sample_rate,
                total_s=session.plan.duration_s,
                engine=placed.engine,
                best_of=to_jsonable(placed.info.get("best_of")),
            )
        )
        if self._store is not None:
            record = SessionRecord(
                session_id=session.session_id,
                plan=session.plan,
                index=segment.index,
                seed=session.seed,
                on_end=session.on_end,
                played_s=position / self.sample_rate,
                continuation=placed.used,
                saved_at=time.time(),
            )
            self._store.save(record)

    def _end_session(self, session: Session) -> None:
        self._halt_producer(session)
        played = self.played_seconds()
        if self._session is session:
            self._session = None
        session.ended.set()
        log.info("session %s ended (%s) after %.1f s", session.session_id, session.end_reason, played)
        self._emit(SessionEnded(reason=session.end_reason, played_s=played))  # type: ignore[arg-type]
        self._record(History.session_ended, session.session_id, played_s=played, reason=session.end_reason)
        if self._store is not None:
            self._store.clear()

    # ------------------------------------------------------------------ events

    def _emit(self, data: EventData) -> None:
        """Deliver an event to every subscriber; a full queue loses its oldest event."""
        event = Event(data)
        log.debug("event %s", event.type)
        if self._event_log is not None:
            self._event_log.write(event)
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    # ------------------------------------------------------------------ persistence

    async def _resume_saved(self) -> None:
        """Continue the session saved in the state folder, at the segment that was playing."""
        assert self._store is not None
        record = await asyncio.to_thread(self._store.load)
        if record is None:
            return
        log.info("resuming session %s at segment %d", record.session_id, record.index)
        session = Session(
            session_id=record.session_id,
            plan=record.plan,
            seed=record.seed,
            on_end=record.on_end,
            next_index=record.index,
            previous=record.continuation,
        )
        async with self._lifecycle:
            self._begin(session)
        self._emit(PlanChanged(from_index=record.index, plan=record.plan.to_dict(), reason="resumed"))


def _producer_settings(config: Config) -> ProducerSettings:
    playback, engine = config.playback, config.engine
    return ProducerSettings(
        buffer_seconds=playback.buffer_seconds,
        fade_seconds=playback.fade_seconds,
        bridge_seconds=playback.bridge_seconds,
        bridge_fade_seconds=playback.bridge_fade_seconds,
        standins=playback.bridge == "builtin",
        stream=engine.stream,
        retries=engine.retries,
        retry_backoff_s=engine.retry_backoff_seconds,
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _clock(seconds: float) -> str:
    """``754.5`` -> ``"12:34"``."""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


__all__ = ["Daemon", "SessionError"]
