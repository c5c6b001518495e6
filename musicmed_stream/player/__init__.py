"""Playback: the timeline of crossfaded clips, the ring buffer and the sinks (sound card, file, null)."""

from musicmed_stream.player.gain import GainRamp
from musicmed_stream.player.ring import RingBuffer
from musicmed_stream.player.sinks import (
    FileSink,
    NullSink,
    Sink,
    SinkError,
    SinkSettings,
    SoundDeviceSink,
    open_sink,
    output_device_problem,
)
from musicmed_stream.player.timeline import Timeline, Voice

__all__ = [
    "FileSink",
    "GainRamp",
    "NullSink",
    "RingBuffer",
    "Sink",
    "SinkError",
    "SinkSettings",
    "SoundDeviceSink",
    "Timeline",
    "Voice",
    "open_sink",
    "output_device_problem",
]
