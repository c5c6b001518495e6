"""The daemon: generate ahead while playing, gaplessly, steered live.

Three activities, each on its own side of a lock-protected boundary:

- the **producer** (an asyncio task) asks the engine for the next clip in a worker thread, prepares
  it (loudness, denoise: :func:`musicmed_stream.chain.prepare_clip`) and schedules it on the
  :class:`~musicmed_stream.player.timeline.Timeline`, keeping about ``buffer_seconds`` of audio
  ahead of the play head;
- the **feeder** (a thread) renders the timeline block by block (crossfades), runs the stateful
  high-pass and limiter (:class:`musicmed_stream.chain.BlockProcessor`), volume and pause ramps, and
  keeps a small :class:`~musicmed_stream.player.ring.RingBuffer` (``ring_seconds``) filled; when
  the next clip will not be ready in time it bridges with a crossfaded loop of the last clip's end;
- the **sink** drains the ring (a PortAudio callback, a recording, or nothing) and only copies.

The ring is short on purpose: every change (volume, pause, skip, re-target, stop) is applied at the
feeder's render position, at most ``ring_seconds`` ahead of what is heard. Events that depend on
what is heard (``segment_started``, ``session_ended``) are markers on the output frame axis,
emitted once the sink's read position passes them.

Re-targeting: the rest of the path is re-planned from the segment playing now, clips scheduled for
the old path are dropped and the clip being generated is cancelled; the first clip of the new path
is generated at once and cut in at the render position with a short equal-power crossfade
(``retarget_fade_seconds``) instead of waiting for the current clip to end. The current clip plays
on (bridged if need be) until then, so the new path is audible one clip-generation time after the
command, whatever the clip length.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.audio_io import read_audio, write_audio, write_text_atomic
from musicmed_stream.chain.clip import conditioning_tail, prepare_clip, resample
from musicmed_stream.chain.config import ChainConfig
from musicmed_stream.chain.crossfade import overlap_frames
from musicmed_stream.engines.base import Continuation, Engine, clip_seed
from musicmed_stream.errors import GenerationCancelled, MusicMedError
from musicmed_stream.planner.types import VA, Plan, PlanSettings, Segment
from musicmed_stream.player.gain import GainRamp
from musicmed_stream.player.ring import RingBuffer
from musicmed_stream.player.sinks import Sink
from musicmed_stream.player.timeline import Timeline
from musicmed_stream.service.api import Event, EventType, StartOptions
from musicmed_stream.service.config import Config, event_log_path
from musicmed_stream.service.eventlog import EventLog, jsonable

log = logging.getLogger(__name__)

STATE_FILE = "session.json"
SUBSCRIBER_QUEUE = 256
MONITOR_PERIOD = 0.02
SWITCH_INTERVAL = 0.0005  # seconds; see Daemon.start


class SessionError(MusicMedError):
    """A command that does not fit the daemon's state or has a bad value."""


@dataclass(frozen=True)
class PreparedClip:
    """A generated and prepared clip, at the sink's sample rate and channel count."""

    audio: np.ndarray
    segment: Segment
    used: Continuation | None
    next: Continuation
    generate_s: float


@dataclass
class Session:
    """One running session; fields marked (lock) are shared with the feeder thread."""

    session_id: str
    plan: Plan
    options: dict[str, Any]
    seed: int
    on_end: str
    next_index: int
    previous: Continuation | None
    timeline_start: int
    generation: int = 0  # bumped by re-target/skip: results of older generations are discarded
    cancel: threading.Event | None = None
    cut_fade_s: float | None = None  # (lock) cut the next clip in with this fade instead of appending
    final: bool = False  # (lock) no more clips will come: do not bridge, end when the timeline is empty
    end_reason: str = "finished"
    end_marked: bool = False  # (lock)
    flush_blocks: int = 1  # (lock) blocks to process after the last clip
    current: dict[str, Any] | None = None  # tag of the clip the sink is playing
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    producer: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class Marker:
    """Something to announce once the sink has played up to ``frame``."""

    frame: int
    kind: str  # "voice" | "end"
    tag: dict[str, Any] = field(default_factory=dict)
    timeline_frame: int = 0  # where the voice starts on the timeline


class Daemon:
    """The music-medicine daemon; implements :class:`~musicmed_stream.service.api.SessionController`.

    Parameters
    ----------
    config : Config
        Settings (session defaults, playback, chain).
    engine : Engine
        Clip generator; called from one worker thread.
    sink : Sink
        Output, started by :meth:`start`.
    state_dir : Path, optional
        Where the session state is persisted for crash recovery; ``None`` disables it. A relative
        ``service.event_log`` is written there.
    """

    def __init__(self, config: Config, engine: Engine, sink: Sink, state_dir: Path | None = None) -> None:
        from musicmed_stream.chain import BlockProcessor

        self.config = config
        self.engine = engine
        self.sink = sink
        self.state_dir = state_dir
        self.sample_rate = sink.sample_rate
        self.channels = sink.channels
        self.block_size = sink.block_size
        self.chain_config = ChainConfig.from_dict(config.chain)
        self._processor = BlockProcessor(self.sample_rate, self.channels, self.chain_config)
        ring_frames = max(int(config.playback.ring_seconds * self.sample_rate), 2 * self.block_size)
        self.ring = RingBuffer(ring_frames, self.channels)
        self.timeline = Timeline(self.channels)
        self._lock = threading.Lock()
        playback = config.playback
        self._volume = GainRamp(playback.volume, int(playback.volume_ramp_seconds * self.sample_rate))
        self._pause = GainRamp(1.0, int(playback.pause_ramp_seconds * self.sample_rate))
        self._paused = False
        self._flush_silence = False
        self._session: Session | None = None
        self._markers: deque[Marker] = deque()
        self._output_frames = 0  # frames the feeder has written to the ring
        # (output frames written, timeline position) after each block, to map the sink's read
        # position back to the timeline (appended by the feeder, trimmed by the event loop)
        self._heard: deque[tuple[int, int]] = deque([(0, 0)])
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._engine_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        # A slow main engine (MusicGen) may be bridged by built-in clips, made on their own thread.
        self._bridge_engine: Engine | None = None
        self._bridge_pool: ThreadPoolExecutor | None = None
        if config.playback.bridge == "builtin" and engine.name != "builtin":
            from musicmed_stream.engines.registry import create_engine

            self._bridge_engine = create_engine("builtin", builtin=config.engine.builtin)
            self._bridge_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-engine")
        self._io_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self._closing = threading.Event()
        self._feeder: threading.Thread | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._switch_interval = sys.getswitchinterval()
        self._underruns = (0, 0)
        self._statistics: Any = None
        self._warmup: asyncio.Future[None] | None = None
        self._mapping: Any = None
        self._event_log: EventLog | None = None
        self.block_seconds = 0.0  # time spent in the block path (feeder), for the benchmark
        self.block_frames = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the feeder, the sink and the monitor; resume a persisted session if configured."""
        self._loop = asyncio.get_running_loop()
        log_path = event_log_path(self.config, self.state_dir)
        if log_path is not None:
            self._event_log = EventLog(log_path)
            log.info("event log: %s", log_path)
        # The feeder releases the GIL at every numpy call; with the default 5-ms switch interval
        # a busy engine thread would keep it that long each time (tens of ms per block).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
        self._feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)
        self._feeder.start()
        await asyncio.to_thread(self.sink.start, self.ring)
        self._monitor = asyncio.create_task(self._watch(), name="monitor")
        await self._load_statistics()  # once, so that starting a session does not wait for it
        if self.config.service.warmup:
            self._warmup = asyncio.get_running_loop().run_in_executor(self._engine_pool, self._warm_up)
        if self.state_dir is not None and self.config.service.resume:
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
        if self._feeder is not None:
            await asyncio.to_thread(self._feeder.join)
        self._engine_pool.shutdown(wait=False, cancel_futures=True)
        if self._bridge_pool is not None:
            self._bridge_pool.shutdown(wait=False, cancel_futures=True)
        self._io_pool.shutdown(wait=True)
        if self._event_log is not None:
            await asyncio.to_thread(self._event_log.close)
        sys.setswitchinterval(self._switch_interval)

    def healthy(self) -> bool:
        """Whether the audio path (feeder, sink) and the monitor are alive (for the watchdog: an
        unhealthy daemon stops pinging and systemd restarts it)."""
        feeder_ok = self._feeder is not None and self._feeder.is_alive()
        monitor_ok = self._monitor is not None and not self._monitor.done()
        return feeder_ok and monitor_ok and self.sink.healthy()

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration: session defaults, fades, buffering and volume."""
        if config.session.mapping != self.config.session.mapping:
            self._mapping = None  # reloaded on next use
        if config.session.jamendo != self.config.session.jamendo:
            self._statistics = None
        self.config = dataclasses.replace(self.config, session=config.session, playback=config.playback)
        self._volume.set(config.playback.volume)

    # ------------------------------------------------------------------ SessionController

    async def start_session(self, options: StartOptions) -> dict[str, Any]:
        """Plan a session from ``options`` (``None`` fields: configured defaults) and start it."""
        defaults = self.config.session
        start_va, start_label = self._resolve(options.start or defaults.start, "start")
        target_va, target_label = self._resolve(options.target or defaults.target, "target")
        settings = PlanSettings(
            minutes=_pick(options.minutes, defaults.minutes),
            clip_seconds=_pick(options.clip_seconds, defaults.clip_seconds),
            path=_pick(options.path, defaults.path),  # type: ignore[arg-type]
            temperature=_pick(options.temperature, defaults.temperature),
            seed=_pick(options.seed, defaults.seed),
            crossfade_fraction=self.chain_config.crossfade_fraction,  # the clip grid the timeline plays
            exclude_genres=tuple(defaults.exclude_genres),  # the clinical palette (docs/planner.md)
            exclude_instruments=tuple(defaults.exclude_instruments),
        )
        _check_settings(settings)
        statistics = await self._load_statistics()
        from musicmed_stream.planner import plan_session

        plan = plan_session(start_va, target_va, settings, statistics, mapping=self._tag_mapping())
        plan = dataclasses.replace(plan, start_label=start_label, target_label=target_label)
        await self.stop(self.config.playback.skip_fade_seconds)
        session = Session(
            session_id=uuid.uuid4().hex[:12],
            plan=plan,
            options=dataclasses.asdict(options),
            seed=settings.seed,
            on_end=defaults.on_end,
            next_index=0,
            previous=None,
            timeline_start=0,
        )
        self._begin(session)
        return {"session_id": session.session_id, "plan": plan.to_dict()}

    async def set_target(self, target: str) -> dict[str, Any]:
        """Re-plan the rest of the session toward ``target`` from where the listener is now."""
        session = self._require_session()
        target_va, label = self._resolve(target, "target")
        from musicmed_stream.planner import replan

        with self._lock:
            current = self._timeline_current(session)
            from_index = 0 if current is None else current["index"] + 1
            position = session.plan.start if current is None else current["segment"].va
            previous = None if current is None else current["next"]
        statistics = await self._load_statistics()
        extended = _extended(session.plan, from_index)
        # The clinical palette as configured now (a SIGHUP that changes it applies to re-plans).
        palette = {
            k: tuple(getattr(self.config.session, k)) for k in ("exclude_genres", "exclude_instruments")
        }
        extended = dataclasses.replace(extended, settings=dataclasses.replace(extended.settings, **palette))
        plan = replan(extended, from_index, position, target_va, statistics, mapping=self._tag_mapping())
        plan = dataclasses.replace(plan, target_label=label)
        with self._lock:
            self.timeline.drop_future()
            session.plan = plan
            session.next_index = from_index
            session.previous = previous
            session.generation += 1
            session.cut_fade_s = self.config.playback.retarget_fade_seconds
            session.final = False
            if session.cancel is not None:
                session.cancel.set()
        log.info("re-targeted to %s from segment %d", label, from_index)
        self._emit("plan_changed", {"from_index": from_index, "plan": plan.to_dict(), "reason": "target"})
        return {"from_index": from_index, "plan": plan.to_dict()}

    async def pause(self) -> None:
        self._require_session()
        with self._lock:
            if self._paused:
                return
            self._paused = True
            self._pause.set(0.0)
        self._emit("paused", {})

    async def resume(self) -> None:
        self._require_session()
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            self._pause.set(1.0)
        self._emit("resumed", {})

    async def skip(self) -> None:
        """Crossfade into the next segment now (or as soon as its clip is ready)."""
        session = self._require_session()
        fade = self._frames(self.config.playback.skip_fade_seconds)
        with self._lock:
            future = [v for v in self.timeline.drop_future() if v.tag.get("kind") == "clip"]
            if not future:
                session.cut_fade_s = self.config.playback.skip_fade_seconds
                return
            self.timeline.cut_in(future[0].audio, fade, future[0].tag)
            for voice in future[1:]:
                self.timeline.append(voice.audio, self._overlap(voice.audio), voice.tag)

    async def stop(self, fade_seconds: float | None = None) -> None:
        """Fade the session out over ``fade_seconds`` (default from config) and end it."""
        session = self._session
        if session is None:
            return
        fade = self.config.playback.fade_seconds if fade_seconds is None else fade_seconds
        if not 0 <= fade <= 60:
            raise SessionError(f"fade_seconds must be within 0..60, got {fade}")
        self._halt_producer(session)
        with self._lock:
            if not session.final or session.end_reason != "stopped":
                session.end_reason = "stopped"
                session.final = True
                if self._paused:  # nothing to fade: the listener hears silence already
                    self.timeline.clear()
                    self._paused = False
                else:
                    self.timeline.fade_all(max(self._frames(fade), 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.ended.wait(), timeout=fade + 5.0)

    async def set_volume(self, volume: float) -> None:
        if isinstance(volume, bool) or not isinstance(volume, int | float) or not 0.0 <= volume <= 1.0:
            raise SessionError(f"volume must be within 0..1, got {volume!r}")
        self._volume.set(float(volume))
        self._emit("volume", {"volume": float(volume)})

    def status(self) -> dict[str, Any]:
        session = self._session
        base = {"volume": self._volume.target, "buffer_s": self.buffer_seconds()}
        if session is None:
            none = dict.fromkeys(("session_id", "segment_index", "valence", "arousal", "emotion", "prompt"))
            return {"state": "idle", **none, "played_s": 0.0, "plan": None, **base}
        current = session.current
        segment: Segment | None = current["segment"] if current else None
        state = "stopping" if session.end_reason == "stopped" else "paused" if self._paused else "playing"
        return {
            "state": state,
            "session_id": session.session_id,
            "segment_index": segment.index if segment else None,
            "valence": segment.valence if segment else None,
            "arousal": segment.arousal if segment else None,
            "emotion": segment.emotion if segment else None,
            "prompt": segment.prompt if segment else None,
            "played_s": self.played_seconds(),
            "plan": session.plan.to_dict(),
            **base,
        }

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    # ------------------------------------------------------------------ measurements

    def buffer_seconds(self) -> float:
        """Audio ready ahead of the play head: scheduled on the timeline plus queued in the ring."""
        return (self.timeline.ahead() + self.ring.available()) / self.sample_rate

    def played_seconds(self) -> float:
        """Session audio the sink has played (pauses excluded), to a block."""
        session = self._session
        if session is None:
            return 0.0
        return max(self._play_head() - session.timeline_start, 0) / self.sample_rate

    def _play_head(self) -> int:
        """Timeline frame the sink has played up to: the last block checkpoint it has passed."""
        heard, read = self._heard, self.ring.frames_read
        while len(heard) > 1 and heard[1][0] <= read:
            heard.popleft()
        return heard[0][1]

    # ------------------------------------------------------------------ session internals

    def _begin(self, session: Session) -> None:
        with self._lock:
            # Only silence is queued when nothing played: the first clip may skip the queue.
            self._flush_silence = self._session is None and not self.timeline.voices
            self.timeline.clear()
            self._processor.reset()  # same seed, same samples: no filter state from an earlier session
            session.timeline_start = self.timeline.position
            session.flush_blocks = -(-self._processor.latency // self.block_size) + 1
            self._paused = False
            self._pause.set(1.0)
            self._session = session
        plan = session.plan
        log.info(
            "session %s: %s -> %s, %d segments",
            session.session_id,
            plan.start_label,
            plan.target_label,
            len(plan.segments),
        )
        self._emit("session_started", {"session_id": session.session_id, "plan": plan.to_dict()})
        session.producer = asyncio.create_task(self._produce(session), name=f"producer-{session.session_id}")

    def _require_session(self) -> Session:
        session = self._session
        if session is None or (session.final and session.end_reason == "stopped"):
            raise SessionError("no session is playing; start one first")
        return session

    def _halt_producer(self, session: Session) -> None:
        session.generation += 1
        if session.cancel is not None:
            session.cancel.set()
        if session.producer is not None:
            session.producer.cancel()

    def _tag_mapping(self) -> Any:
        """The configured tag mapping (``session.mapping``, else the built-in one), loaded once: it
        resolves the states and gives every planned clip its mood tag."""
        if self._mapping is None:
            from musicmed_stream.emotion import load_tag_mapping

            self._mapping = load_tag_mapping(self.config.session.mapping or None)
        return self._mapping

    def _resolve(self, spec: str, what: str) -> tuple[VA, str]:
        from musicmed_stream.emotion import resolve_state

        if not isinstance(spec, str):
            raise SessionError(f"{what} must be an emotion name, a mood tag or 'valence,arousal'")
        return resolve_state(spec, mapping=self._tag_mapping())

    async def _load_statistics(self) -> Any:
        if self._statistics is None:
            from musicmed_stream.planner.statistics import builtin_palette, load_jamendo_statistics

            folder = self.config.session.jamendo
            if folder and Path(folder).is_dir():
                self._statistics = await asyncio.to_thread(load_jamendo_statistics, folder)
            else:
                log.info("MTG-Jamendo metadata not found at %r: planning with the built-in palette", folder)
                self._statistics = builtin_palette()
        return self._statistics

    def _segment_for(self, session: Session, index: int) -> Segment | None:
        """Segment ``index`` of the plan; past the end, the target held (``on_end = "hold"``)."""
        segments = session.plan.segments
        if index < len(segments):
            return segments[index]
        if session.on_end != "hold" or not segments:
            return None
        return _hold_segment(segments[-1], index, session.plan.settings.crossfade_fraction)

    async def _produce(self, session: Session) -> None:
        """Generate and schedule clips until the plan is done or the session is stopped."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_room(session)
            with self._lock:
                generation, index, previous = session.generation, session.next_index, session.previous
            segment = self._segment_for(session, index)
            if segment is None:  # the plan is done (its last clip may have failed: end on the bridge)
                with self._lock:
                    if generation == session.generation:
                        if not session.final:
                            self.timeline.fade_tail(self._frames(self.config.playback.fade_seconds))
                            session.final = True
                        return
                continue
            cancel = threading.Event()
            session.cancel = cancel
            seed = clip_seed(session.seed, index)
            try:
                pending = loop.run_in_executor(
                    self._engine_pool, self._make_clip, segment, previous, seed, cancel
                )
                if self._bridge_engine is not None:
                    await self._bridge_with_builtin(session, generation, pending, segment, seed)
                clip = await pending
            except GenerationCancelled:
                continue
            except Exception as exc:
                if generation != session.generation:
                    continue
                log.warning(
                    "engine failed on segment %d: %s", index, exc, exc_info=not isinstance(exc, MusicMedError)
                )
                self._emit("error", {"message": str(exc), "where": f"engine, segment {index}"})
                with self._lock:
                    if generation == session.generation:
                        session.next_index = index + 1
                        self._bridge(session, f"engine error on segment {index}")
                continue
            with self._lock:
                if generation != session.generation:
                    continue
                self._schedule(session, clip)
                session.next_index = index + 1
                session.previous = clip.next
            log.debug("segment %d ready in %.2f s", index, clip.generate_s)

    async def _bridge_with_builtin(
        self,
        session: Session,
        generation: int,
        pending: asyncio.Future[PreparedClip],
        segment: Segment,
        seed: int,
    ) -> None:
        """While the main engine works on ``segment``, have the built-in engine make a clip of the
        same segment once the audio ahead runs low, and play it until the main clip is ready."""
        assert self._bridge_pool is not None
        loop = asyncio.get_running_loop()
        low = self._frames(max(2 * self.config.playback.bridge_seconds, 10.0))
        bridge: asyncio.Future[PreparedClip] | None = None
        while not pending.done():
            await asyncio.wait([pending, *([bridge] if bridge else [])], timeout=0.1)
            if generation != session.generation:
                return
            if bridge is None and self.timeline.ahead() < low:
                bridge = loop.run_in_executor(
                    self._bridge_pool,
                    self._make_clip,
                    segment,
                    None,
                    seed,
                    threading.Event(),
                    self._bridge_engine,
                )
            elif bridge is not None and bridge.done() and not pending.done():
                self._schedule_builtin_bridge(session, generation, bridge)
                return

    def _schedule_builtin_bridge(
        self, session: Session, generation: int, bridge: asyncio.Future[PreparedClip]
    ) -> None:
        """Play a finished built-in stand-in clip after what is scheduled."""
        if bridge.exception() is not None:
            log.warning("built-in bridge clip failed: %s", bridge.exception())
            return
        clip = bridge.result()
        tag = {"kind": "bridge", "engine": "builtin", "index": clip.segment.index, "loop": clip.audio}
        with self._lock:
            if generation != session.generation:
                return
            self.timeline.append(clip.audio, self._overlap(clip.audio), tag)
        seconds = clip.audio.shape[0] / self.sample_rate
        reason = f"built-in clip while the {self.engine.name} engine is late"
        self._emit("bridge", {"index": clip.segment.index, "seconds": seconds, "reason": reason})

    async def _wait_for_room(self, session: Session) -> None:
        limit = self.config.playback.buffer_seconds * self.sample_rate
        while session.cut_fade_s is None and self.timeline.ahead() > limit:
            await asyncio.sleep(0.05)

    def _warm_up(self) -> None:
        """Make and prepare a short clip of the default session's first segment (engine thread), so
        that lazy imports and the engine's caches (instrument templates, kernels) are ready."""
        from musicmed_stream.planner import plan_session

        defaults = self.config.session
        try:
            seconds = min(defaults.clip_seconds, 8.0)
            settings = PlanSettings(
                minutes=seconds / 60,
                clip_seconds=seconds,
                seed=defaults.seed,
                exclude_genres=tuple(defaults.exclude_genres),
                exclude_instruments=tuple(defaults.exclude_instruments),
            )
            plan = plan_session(
                defaults.start, defaults.target, settings, self._statistics, mapping=self._tag_mapping()
            )
            started = time.perf_counter()
            self._make_clip(plan.segments[0], None, clip_seed(defaults.seed, 0), threading.Event())
            log.info("engine warmed up in %.2f s", time.perf_counter() - started)
        except Exception as exc:  # a warm-up failure only costs speed; the session reports real errors
            log.warning("engine warm-up failed: %s", exc)

    def _make_clip(
        self,
        segment: Segment,
        previous: Continuation | None,
        seed: int,
        cancel: threading.Event,
        engine: Engine | None = None,
    ) -> PreparedClip:
        """Generate (with ``engine``, default the main one) and prepare one clip (worker thread)."""
        started = time.perf_counter()
        clip = (engine or self.engine).generate(segment, previous, seed=seed, cancel=cancel)
        if cancel.is_set():
            raise GenerationCancelled(f"segment {segment.index} abandoned")
        audio = prepare_clip(clip.audio, clip.sample_rate, self.chain_config)
        tail = conditioning_tail(clip.audio, clip.sample_rate, self.chain_config)
        if clip.sample_rate != self.sample_rate:
            audio = resample(audio, clip.sample_rate, self.sample_rate)
        audio = _match_channels(np.asarray(audio, dtype=np.float32), self.channels)
        following = Continuation(tail=tail, sample_rate=clip.sample_rate, state=clip.state)
        return PreparedClip(audio, segment, previous, following, time.perf_counter() - started)

    def _schedule(self, session: Session, clip: PreparedClip) -> None:
        """Put a clip on the timeline (lock held)."""
        tag = {
            "kind": "clip",
            "index": clip.segment.index,
            "segment": clip.segment,
            "used": clip.used,
            "next": clip.next,
            "loop": clip.audio,
        }
        tail = self.timeline.tail
        if session.cut_fade_s is None and tail is not None and tail.tag.get("engine") == "builtin":
            session.cut_fade_s = self.config.playback.bridge_fade_seconds  # the stand-in clip gives way
        if session.cut_fade_s is not None:
            self.timeline.cut_in(clip.audio, max(self._frames(session.cut_fade_s), 1), tag)
            session.cut_fade_s = None
        else:
            self.timeline.append(clip.audio, self._overlap(clip.audio), tag)
        last = clip.segment.index >= len(session.plan.segments) - 1
        if last and session.on_end == "stop":
            self.timeline.fade_tail(self._frames(self.config.playback.fade_seconds))
            session.final = True

    def _bridge(self, session: Session, reason: str) -> None:
        """Extend the last clip with a crossfaded loop of its end (lock held)."""
        tail = self.timeline.tail
        if tail is None or "loop" not in tail.tag:
            return
        playback = self.config.playback
        loop = tail.tag["loop"][-self._frames(playback.bridge_seconds) :]
        fade = min(self._frames(playback.bridge_fade_seconds), loop.shape[0] // 2)
        tag = {"kind": "bridge", "index": session.next_index, "loop": tail.tag["loop"]}
        self.timeline.append(loop, fade, tag)
        self._emit_threadsafe(
            "bridge",
            {"index": session.next_index, "seconds": loop.shape[0] / self.sample_rate, "reason": reason},
        )

    def _timeline_current(self, session: Session) -> dict[str, Any] | None:
        """Tag of the latest clip that has started on the timeline (lock held)."""
        started = [
            v
            for v in self.timeline.voices
            if v.start <= self.timeline.position and v.tag.get("kind") == "clip"
        ]
        if started:
            return max(started, key=lambda v: v.start).tag
        return session.current

    def _overlap(self, audio: np.ndarray) -> int:
        """Crossfade into ``audio``: the chain's fraction of the shorter of it and the last clip."""
        tail = self.timeline.tail
        previous = tail.audio.shape[0] if tail is not None else audio.shape[0]
        return overlap_frames(previous, audio.shape[0], self.chain_config.crossfade_fraction)

    def _frames(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    # ------------------------------------------------------------------ feeder thread

    def _feed(self) -> None:
        """Keep the ring filled with processed blocks (runs on its own thread)."""
        block = np.zeros((self.block_size, self.channels), dtype=np.float32)
        while not self._closing.is_set():
            if self.ring.space() < self.block_size:
                self.ring.writable.clear()
                if self.ring.space() < self.block_size:
                    self.ring.writable.wait(0.05)
                continue
            started = time.perf_counter()
            with self._lock:
                flush = self._render(block)
                self._heard.append((self._output_frames, self.timeline.position))
            self.block_seconds += time.perf_counter() - started
            self.block_frames += self.block_size
            if flush:
                self.ring.clear()  # drop queued silence: the session's first sound plays sooner
            self.ring.write(block)

    def _render(self, block: np.ndarray) -> bool:
        """Render the next block of output (lock held); return whether queued silence may be dropped."""
        session = self._session
        frame = self._output_frames
        self._output_frames += block.shape[0]
        if self._paused and self._pause.settled:
            block[:] = 0.0
            return False
        flush = self._flush_silence and bool(self.timeline.voices)
        if flush:
            self._flush_silence = False
        if session is not None and not session.final and not self._paused:
            bridge_at = self._frames(self.config.playback.bridge_fade_seconds) + 2 * self.block_size
            if 0 < self.timeline.ahead() <= bridge_at:
                self._bridge(session, "next clip not ready in time")
        for voice, offset in self.timeline.render(block):
            self._markers.append(Marker(frame + offset, "voice", voice.tag, voice.start))
        if session is not None and not session.end_marked:
            block[:] = self._processor.process(block)
            if session.final and not self.timeline.voices:
                # Past the last clip: a few more blocks empty the limiter's look-ahead, then the
                # session ends and the block path rests (a fixed count, so endings are reproducible).
                session.flush_blocks -= 1
                if session.flush_blocks < 0:
                    session.end_marked = True
                    self._markers.append(Marker(frame + block.shape[0], "end"))
        elif session is not None:
            block[:] = 0.0
        self._pause.apply(block)
        self._volume.apply(block)
        return flush

    # ------------------------------------------------------------------ monitor (event loop)

    async def _watch(self) -> None:
        """Announce what the sink has played; report underruns and the buffer level."""
        last_level = 0.0
        while True:
            await asyncio.sleep(MONITOR_PERIOD)
            played = self.ring.frames_read
            self._play_head()  # keeps the checkpoint queue short
            while self._markers and self._markers[0].frame <= played:
                self._announce(self._markers.popleft())
            blocks, frames = self.sink.counters()
            if frames > self._underruns[1]:
                if self._session is not None:
                    self._emit("underrun", {"frames": frames - self._underruns[1]})
                self._underruns = (blocks, frames)
            now = time.monotonic()
            if self._session is not None and now - last_level >= self.config.playback.buffer_event_seconds:
                last_level = now
                self._emit(
                    "buffer_level",
                    {"seconds": self.buffer_seconds(), "target_seconds": self.config.playback.buffer_seconds},
                )

    def _announce(self, marker: Marker) -> None:
        session = self._session
        if session is None:
            return
        if marker.kind == "end":
            self._end_session(session, session.end_reason)
            return
        tag = marker.tag
        if tag.get("kind") != "clip":
            return
        session.current = tag
        segment: Segment = tag["segment"]
        log.info("segment %d started: %s", segment.index, segment.prompt)
        self._emit(
            "segment_started",
            {
                "index": segment.index,
                "valence": segment.valence,
                "arousal": segment.arousal,
                "emotion": segment.emotion,
                "mood": segment.mood,
                "prompt": segment.prompt,
                "start_s": (marker.timeline_frame - session.timeline_start) / self.sample_rate,
            },
        )
        if self.state_dir is not None:
            record = self._state_record(session, segment.index, tag["used"])
            self._io_pool.submit(self._save_state, record, tag["used"])

    def _end_session(self, session: Session, reason: str) -> None:
        self._halt_producer(session)
        played = self.played_seconds()
        with self._lock:
            if self._session is session:
                self._session = None
                self.timeline.clear()
        session.ended.set()
        log.info("session %s ended (%s) after %.1f s", session.session_id, reason, played)
        self._emit("session_ended", {"reason": reason, "played_s": played})
        if self.state_dir is not None:
            self._io_pool.submit(self._clear_state)

    # ------------------------------------------------------------------ events

    def _emit(self, kind: EventType, data: dict[str, Any]) -> None:
        """Deliver an event to every subscriber; a full queue loses its oldest event."""
        event = Event(kind, data)
        log.debug("event %s %s", kind, {k: v for k, v in data.items() if k != "plan"})
        if self._event_log is not None:
            self._event_log.write(event)
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def _emit_threadsafe(self, kind: EventType, data: dict[str, Any]) -> None:
        """:meth:`_emit` from any thread (the feeder's events go through the event loop)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._emit, kind, data)

    # ------------------------------------------------------------------ persistence

    def _state_record(self, session: Session, index: int, used: Continuation | None) -> dict[str, Any]:
        return {
            "version": 1,
            "session_id": session.session_id,
            "index": index,
            "seed": session.seed,
            "on_end": session.on_end,
            "options": session.options,
            "plan": session.plan.to_dict(),
            "continuation": None
            if used is None
            else {"state": used.state, "sample_rate": used.sample_rate, "tail": f"tail-{index:05d}.wav"},
            "played_s": self.played_seconds(),
            "saved_at": time.time(),
        }

    def _save_state(self, record: dict[str, Any], used: Continuation | None) -> None:
        """Write the tail audio, then the JSON that names it; both atomically (I/O thread)."""
        assert self.state_dir is not None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            keep = None
            if used is not None and record["continuation"] is not None:
                keep = record["continuation"]["tail"]
                tail = (
                    used.tail if used.tail.shape[0] else np.zeros((1, max(used.tail.shape[1], 1)), np.float32)
                )
                write_audio(self.state_dir / keep, tail, used.sample_rate, subtype="FLOAT")
            write_text_atomic(self.state_dir / STATE_FILE, json.dumps(record, indent=1, default=jsonable))
            for old in self.state_dir.glob("tail-*.wav"):
                if old.name != keep:
                    old.unlink(missing_ok=True)
        except (OSError, MusicMedError) as exc:
            log.error("cannot save the session state in %s: %s", self.state_dir, exc)

    def _clear_state(self) -> None:
        assert self.state_dir is not None
        for path in [self.state_dir / STATE_FILE, *self.state_dir.glob("tail-*.wav")]:
            path.unlink(missing_ok=True)

    async def _resume_saved(self) -> None:
        """Continue the session saved in the state folder, at the segment that was playing."""
        assert self.state_dir is not None
        path = self.state_dir / STATE_FILE
        if not path.is_file():
            return
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            plan = Plan.from_dict(record["plan"])
            previous = None
            if record["continuation"] is not None:
                cont = record["continuation"]
                tail, rate = read_audio(self.state_dir / cont["tail"])
                previous = Continuation(tail=tail, sample_rate=rate, state=cont["state"])
            index = int(record["index"])
        except (OSError, ValueError, KeyError, TypeError, MusicMedError) as exc:
            log.error("cannot resume the saved session (%s); starting idle", exc)
            return
        log.info("resuming session %s at segment %d", record["session_id"], index)
        session = Session(
            session_id=record["session_id"],
            plan=plan,
            options=record.get("options", {}),
            seed=int(record["seed"]),
            on_end=record.get("on_end", self.config.session.on_end),
            next_index=index,
            previous=previous,
            timeline_start=0,
        )
        self._begin(session)
        self._emit("plan_changed", {"from_index": index, "plan": plan.to_dict(), "reason": "resumed"})


def _hold_segment(last: Segment, index: int, crossfade_fraction: float) -> Segment:
    """Segment ``index`` past the end of a plan: the last segment again, later (one clip step,
    a clip less its crossfade overlap, per segment)."""
    step = last.duration_s * (1.0 - crossfade_fraction)
    return dataclasses.replace(last, index=index, start_s=last.start_s + (index - last.index) * step)


def _extended(plan: Plan, from_index: int) -> Plan:
    """``plan`` with held segments appended so that a re-plan from ``from_index`` has room to move
    (match, transition and settle clips); unchanged when the plan is long enough."""
    wanted = from_index + max(4, plan.settings.settle_clips + 3)
    if len(plan.segments) >= wanted or not plan.segments:
        return plan
    fraction = plan.settings.crossfade_fraction
    extra = tuple(_hold_segment(plan.segments[-1], i, fraction) for i in range(len(plan.segments), wanted))
    return dataclasses.replace(plan, segments=plan.segments + extra)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _check_settings(settings: PlanSettings) -> None:
    if not 0.1 <= settings.minutes <= 240:
        raise SessionError(f"minutes must be within 0.1..240, got {settings.minutes}")
    if not 1 <= settings.clip_seconds <= 120:
        raise SessionError(f"clip_seconds must be within 1..120, got {settings.clip_seconds}")
    if settings.path not in ("line", "arc"):
        raise SessionError(f"path must be 'line' or 'arc', got {settings.path!r}")
    if settings.temperature < 0:
        raise SessionError(f"temperature must be >= 0, got {settings.temperature}")
    if not 0 <= settings.seed < 2**31:
        raise SessionError(f"seed must be within 0..2147483647, got {settings.seed}")


def _match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Mono to stereo by duplication, stereo to mono by averaging."""
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.shape[1] == channels:
        return audio
    if audio.shape[1] == 1:
        return np.repeat(audio, channels, axis=1)
    return audio.mean(axis=1, keepdims=True).astype(np.float32)


__all__ = ["Daemon", "PreparedClip", "SessionError"]
