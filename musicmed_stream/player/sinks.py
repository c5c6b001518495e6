"""Where the played audio goes: a sound card (``sounddevice``), a recording (``file``) or nowhere
(``null``).

Every sink pulls fixed blocks from a :class:`~musicmed_stream.player.ring.RingBuffer`. A block
the ring cannot fill completely is completed with silence and counted as an underrun; the daemon
reads the counters from its own thread, so the audio path only copies and counts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import soundfile as sf
from pydantic import Field, field_validator

from musicmed_stream.audio_io import PRIVATE_FILE_MODE, make_private
from musicmed_stream.bounds import Section
from musicmed_stream.errors import MusicMedError
from musicmed_stream.player.ring import RingBuffer

log = logging.getLogger(__name__)

SinkType = Literal["sounddevice", "file", "null"]
SINK_TYPES: tuple[str, ...] = ("sounddevice", "file", "null")


class SinkError(MusicMedError):
    """An output that cannot be opened (no audio device, unwritable recording file)."""


class SinkSettings(Section):
    """How to open a sink (the ``[sink]`` section of the configuration).

    Attributes
    ----------
    type : {"sounddevice", "file", "null"}
    device : str
        sounddevice output device name or index; empty for the system default.
    sample_rate, channels, block_size : int
        Output format and frames per block.
    latency : str or float
        sounddevice latency: ``"low"``, ``"high"`` or seconds.
    file : str
        Recording path of the ``file`` sink (.wav or .flac); a relative path lies in the state
        folder, next to the event log, so that ``musicmed-stream evaluate STATE_DIR`` finds both.
    file_max_mb : int
        The recording is rotated (to ``NAME.1.wav``, replacing an older one) when it grows past
        this many MB; 0 for no limit. Silence while no session plays is not recorded.
    fallback : {"none", "file", "null"}
        Sink to use when the sound card cannot be opened.
    speed : float
        Pace of the ``file`` and ``null`` sinks relative to real time (e.g. 20 for soak tests).
    """

    section = "sink"

    type: SinkType = "sounddevice"
    device: str = ""
    sample_rate: Annotated[int, Field(ge=8000, le=384000)] = 44100
    channels: Annotated[int, Field(ge=1, le=2)] = 2
    block_size: Annotated[int, Field(ge=16, le=65536)] = 1024
    latency: Literal["low", "high"] | Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = "high"
    file: str = "recording.wav"
    file_max_mb: Annotated[int, Field(ge=0, le=10**6)] = 1000
    fallback: Literal["none", "file", "null"] = "file"
    speed: Annotated[float, Field(ge=0.01, le=1000, allow_inf_nan=False)] = 1.0

    @field_validator("file")
    @classmethod
    def _audio_file(cls, value: str) -> str:
        if Path(value).suffix.lower() not in (".wav", ".flac"):
            raise ValueError("must end in .wav or .flac")
        return value


class Sink(Protocol):
    """An output that consumes a ring buffer block by block once started."""

    name: str
    sample_rate: int
    channels: int
    block_size: int

    def start(self, ring: RingBuffer) -> None: ...

    def stop(self) -> None: ...

    def counters(self) -> tuple[int, int]:
        """``(underrun_blocks, underrun_frames)`` since start."""
        ...

    def healthy(self) -> bool:
        """Whether the output is still consuming audio (a lost sound card is not)."""
        ...


class _Counters:
    """Underrun counters written by the audio side, read by the daemon."""

    def __init__(self) -> None:
        self.blocks = 0
        self.frames = 0

    def pull(self, ring: RingBuffer, out: np.ndarray) -> None:
        got = ring.read_into(out)
        if got < out.shape[0]:
            out[got:] = 0.0
            self.blocks += 1
            self.frames += out.shape[0] - got


class PacedSink:
    """Base of the sinks without a sound card: a thread pulls one block per block period.

    Parameters
    ----------
    sample_rate, channels, block_size : int
    speed : float
        Blocks are pulled ``speed`` times faster than real time.
    """

    name = "paced"

    def __init__(self, sample_rate: int, channels: int, block_size: int, speed: float = 1.0) -> None:
        if speed <= 0:
            raise SinkError(f"sink speed must be positive, got {speed}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_size = block_size
        self.speed = speed
        self._counters = _Counters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, ring: RingBuffer) -> None:
        self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(ring,), name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close()

    def counters(self) -> tuple[int, int]:
        return self._counters.blocks, self._counters.frames

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, ring: RingBuffer) -> None:
        block = np.zeros((self.block_size, self.channels), dtype=np.float32)
        period = self.block_size / self.sample_rate / self.speed
        due = time.monotonic()
        while not self._stop.is_set():
            self._counters.pull(ring, block)
            self._consume(block)
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif (
                delay < -2 * period
            ):  # this thread stalled: go on from now, as a device would, not in a burst
                due = time.monotonic()

    def _open(self) -> None:
        """Acquire the sink's resources (called before the thread starts)."""

    def _consume(self, block: np.ndarray) -> None:
        """Do something with one played block."""

    def _close(self) -> None:
        """Release the sink's resources (called after the thread stopped)."""


class NullSink(PacedSink):
    """Discards the audio at the pace of a real device (times ``speed``)."""

    name = "null"


class FileSink(PacedSink):
    """Records exactly the blocks that were played to a WAV or FLAC file, written incrementally.

    The file is flushed about once a second so that it can be read while the daemon runs, and
    closed properly (header completed) on :meth:`stop`. WAV is written as 32-bit float so the
    recording is bit-identical to the played samples. While :attr:`idle` says nothing plays, silent
    blocks are not recorded (an idle daemon would otherwise write 1.2 GB an hour of zeros); past
    ``max_bytes`` the file is rotated to ``NAME.1.SUFFIX`` (one older file is kept). The recording
    is the listener's own: mode 0600 whatever the umask (a continued, looser one is tightened).
    """

    name = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        block_size: int,
        speed: float = 1.0,
        max_bytes: int = 0,
    ) -> None:
        super().__init__(sample_rate, channels, block_size, speed)
        self.path = Path(path).absolute()
        if self.path.suffix.lower() not in (".wav", ".flac"):
            raise SinkError(f"sink.file must end in .wav or .flac, got {self.path}")
        self.max_bytes = max_bytes
        self.idle: Callable[[], bool] | None = None  # set by the daemon: no program plays
        self.frames_written = 0  # in the current file
        self._file: sf.SoundFile | None = None
        self._since_flush = 0

    def _open(self) -> None:
        """Open the recording: a WAV of the same format is continued (a restarted daemon appends,
        so the history's offsets into it stay right); anything else is kept as ``NAME.1`` first."""
        subtype = "FLOAT" if self.path.suffix.lower() == ".wav" else "PCM_24"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self._continue(subtype):
                make_private(self.path)
                return
            if self.path.is_file():
                os.replace(self.path, self._older())
            # created 0600 before libsndfile opens it (and keeps that mode), never readable by others
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE))
            make_private(self.path)
            self._file = sf.SoundFile(
                self.path, "w", samplerate=self.sample_rate, channels=self.channels, subtype=subtype
            )
            self.frames_written = 0
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise SinkError(f"cannot open recording file {self.path}: {exc}") from exc

    def _continue(self, subtype: str) -> bool:
        try:
            info = sf.info(self.path)
        except (sf.LibsndfileError, RuntimeError):
            return False
        same = (info.samplerate, info.channels, info.subtype) == (self.sample_rate, self.channels, subtype)
        if not same or self.path.suffix.lower() != ".wav":  # libsndfile appends to WAV, not to FLAC
            return False
        self._file = sf.SoundFile(self.path, "r+")
        self.frames_written = self._file.seek(0, sf.SEEK_END)
        return True

    def _older(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.1{self.path.suffix}")

    def _consume(self, block: np.ndarray) -> None:
        assert self._file is not None
        if self.idle is not None and self.idle() and not block.any():
            return
        self._file.write(block)
        self.frames_written += block.shape[0]
        self._since_flush += block.shape[0]
        if self._since_flush >= self.sample_rate:
            self._file.flush()
            self._since_flush = 0
            if self.max_bytes and self.path.stat().st_size > self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        """Keep the recording so far as ``NAME.1.SUFFIX`` and start a new file."""
        self._close()
        older = self._older()
        os.replace(self.path, older)
        log.info(
            "recording %s reached %d MB: kept as %s, a new one begins", self.path, self.max_bytes >> 20, older
        )
        self.frames_written = 0
        self._open()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ManualSink:
    """A sink that plays only when told to (:meth:`pull`): tests and benchmarks step the audio path
    frame by frame with it, without threads, sleeps or a clock. It keeps what it played."""

    name = "manual"
    manual = True

    def __init__(self, sample_rate: int, channels: int, block_size: int, keep: bool = True) -> None:
        self.sample_rate, self.channels, self.block_size = sample_rate, channels, block_size
        self.keep = keep
        self.blocks: list[np.ndarray] = []
        self._counters = _Counters()
        self._ring: RingBuffer | None = None

    def start(self, ring: RingBuffer) -> None:
        self._ring = ring

    def stop(self) -> None:
        self._ring = None

    def pull(self) -> np.ndarray:
        """Play one block (underruns counted and zero-filled as a device would)."""
        assert self._ring is not None, "sink not started"
        block = np.zeros((self.block_size, self.channels), dtype=np.float32)
        self._counters.pull(self._ring, block)
        if self.keep:
            self.blocks.append(block)
        return block

    def played(self) -> np.ndarray:
        """Everything played so far, ``(frames, channels)``."""
        if not self.blocks:
            return np.zeros((0, self.channels), np.float32)
        return np.concatenate(self.blocks)

    def counters(self) -> tuple[int, int]:
        return self._counters.blocks, self._counters.frames

    def healthy(self) -> bool:
        return self._ring is not None


class SoundDeviceSink:
    """Plays through PortAudio with ``sounddevice.OutputStream`` and a callback.

    The callback only copies one block out of the ring (zero-filling what is missing) and
    counts underruns; it never allocates and never waits for generation.
    """

    name = "sounddevice"

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        block_size: int,
        device: str | int | None = None,
        latency: str | float = "high",
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_size = block_size
        self.device = device
        self.latency = latency
        self._counters = _Counters()
        self.device_underflows = 0
        self._stream: Any = None

    def start(self, ring: RingBuffer) -> None:
        import sounddevice as sd

        counters = self._counters

        def callback(outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status.output_underflow:
                self.device_underflows += 1
            counters.pull(ring, outdata)

        try:
            self._stream = sd.OutputStream(
                samplerate=self.sample_rate,
                blocksize=self.block_size,
                device=self.device,
                channels=self.channels,
                dtype="float32",
                latency=self.latency,
                callback=callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise SinkError(f"cannot open audio output {self.device or 'default'!s}: {exc}") from exc

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def counters(self) -> tuple[int, int]:
        return self._counters.blocks, self._counters.frames

    def healthy(self) -> bool:
        return self._stream is not None and bool(self._stream.active)


def output_device_problem(
    device: str | int | None = None, sample_rate: int = 44100, channels: int = 2
) -> str | None:
    """Why no sound card output can be opened here, or ``None`` when one is available."""
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        return f"PortAudio is not available ({exc}); install libportaudio2"
    try:
        sd.query_devices(device, kind="output")
        sd.check_output_settings(device, channels=channels, dtype="float32", samplerate=sample_rate)
    except (sd.PortAudioError, ValueError) as exc:
        return f"no audio output device{f' {device!r}' if device not in (None, '') else ''} ({exc})"
    return None


def _device_arg(device: str) -> str | int | None:
    if device == "":
        return None
    return int(device) if device.isdigit() else device


def open_sink(settings: SinkSettings, folder: Path | None = None) -> Sink:
    """Create the configured sink, falling back as configured when there is no sound card; a
    relative ``sink.file`` lies in ``folder`` (the state folder).

    Raises
    ------
    SinkError
        If the sound card cannot be used and ``fallback`` is ``"none"``, or the settings are bad.
    """
    fmt = (settings.sample_rate, settings.channels, settings.block_size)
    recording = Path(settings.file).expanduser()
    if folder is not None and not recording.is_absolute():
        recording = folder / recording
    file_options = {"speed": settings.speed, "max_bytes": settings.file_max_mb << 20}
    if settings.type == "null":
        return NullSink(*fmt, speed=settings.speed)
    if settings.type == "file":
        log.info("recording to %s", recording.absolute())
        return FileSink(recording, *fmt, **file_options)
    if settings.type != "sounddevice":
        raise SinkError(f"unknown sink type {settings.type!r}; choose one of {', '.join(SINK_TYPES)}")
    device = _device_arg(settings.device)
    problem = output_device_problem(device, settings.sample_rate, settings.channels)
    if problem is None:
        return SoundDeviceSink(*fmt, device=device, latency=settings.latency)
    if settings.fallback == "none":
        raise SinkError(f'{problem}; set sink.fallback = "file" to record instead')
    log.warning("%s; falling back to the %s sink", problem, settings.fallback)
    if settings.fallback == "file":
        log.warning(
            'recording to %s instead (sink.fallback = "file"; silence is not recorded)', recording.absolute()
        )
        return FileSink(recording, *fmt, **file_options)
    return NullSink(*fmt, speed=settings.speed)
