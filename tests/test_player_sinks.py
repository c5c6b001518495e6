"""The file and null sinks consume the ring at a pace and record or count what was played."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from musicmed_stream.errors import ConfigError
from musicmed_stream.player.ring import RingBuffer
from musicmed_stream.player.sinks import FileSink, NullSink, SinkError, SinkSettings, open_sink


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_file_sink_records_exactly_what_was_played(tmp_path) -> None:
    sr, block = 8000, 256
    rng = np.random.default_rng(1)
    signal = rng.uniform(-0.9, 0.9, size=(3000, 2)).astype(np.float32)
    ring = RingBuffer(4096, 2)
    assert ring.write(signal) == len(signal)
    sink = FileSink(tmp_path / "rec.wav", sr, 2, block, speed=20.0)
    sink.start(ring)
    _wait_for(lambda: ring.frames_read == len(signal) and sink.counters()[1] >= 2 * block)
    sink.stop()
    recorded, rate = sf.read(tmp_path / "rec.wav", dtype="float32", always_2d=True)
    assert rate == sr
    assert len(recorded) % block == 0
    np.testing.assert_array_equal(recorded[: len(signal)], signal)
    assert not recorded[len(signal) :].any(), "an empty ring plays silence"
    blocks, frames = sink.counters()
    assert frames == len(recorded) - len(signal)
    assert blocks == -(-frames // block)  # the one partial block plus every empty one


def test_null_sink_counts_underruns_when_nothing_is_written() -> None:
    ring = RingBuffer(1024, 1)
    sink = NullSink(8000, 1, 128, speed=50.0)
    sink.start(ring)
    assert sink.healthy()
    _wait_for(lambda: sink.counters()[0] >= 3)
    sink.stop()
    assert not sink.healthy()
    blocks, frames = sink.counters()
    assert frames == blocks * 128
    assert ring.frames_read == 0


def test_bad_sink_settings_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"sink\.file = .*x\.mp3': must end in \.wav or \.flac"):
        SinkSettings.from_dict({"type": "file", "file": str(tmp_path / "x.mp3")})
    with pytest.raises(ConfigError, match=r"sink\.speed = 0"):
        SinkSettings.from_dict({"type": "null", "speed": 0})
    with pytest.raises(ConfigError, match=r"sink\.type = 'speaker'"):
        SinkSettings.from_dict({"type": "speaker"})
    with pytest.raises(SinkError, match="speed"):  # the sink itself refuses too, outside any config
        open_sink(SinkSettings.model_construct(type="null", speed=0.0))


def test_the_recording_is_0600_whatever_the_umask_and_a_continued_one_is_tightened(tmp_path) -> None:
    import os
    import stat

    def mode(path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    old = os.umask(0o002)
    try:
        path = tmp_path / "state" / "recording.wav"
        sink = FileSink(path, 8000, 2, 128, speed=50.0)
        sink.start(RingBuffer(1024, 2))
        sink.stop()
        assert mode(path) == 0o600, "a new recording"
        path.chmod(0o664)  # e.g. written before this was so
        sink.start(RingBuffer(1024, 2))  # the same format: continued, and tightened
        sink.stop()
        assert mode(path) == 0o600
        flac = tmp_path / "state" / "recording.flac"
        flac.write_bytes(b"not audio")
        flac.chmod(0o664)
        sink = FileSink(flac, 8000, 2, 128, speed=50.0)
        sink.start(RingBuffer(1024, 2))  # not continued: kept as recording.1.flac, a new one begins
        sink.stop()
        assert mode(flac) == 0o600
        assert (tmp_path / "state" / "recording.1.flac").read_bytes() == b"not audio"
    finally:
        os.umask(old)
