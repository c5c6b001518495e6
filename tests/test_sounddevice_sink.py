"""The sounddevice sink plays for real through PortAudio into an ALSA null output (no mock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLAYER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import sounddevice as sd
    from musicmed_stream.player.ring import RingBuffer
    from musicmed_stream.player.sinks import SinkSettings, SoundDeviceSink, open_sink

    outputs = [d["name"] for d in sd.query_devices() if d["max_output_channels"] > 0]
    clip = np.sin(2 * np.pi * 440 * np.arange(22050) / 44100).astype(np.float32)
    clip = np.repeat(clip[:, None], 2, axis=1)
    ring = RingBuffer(len(clip), 2)
    ring.write(clip)
    sink = open_sink(SinkSettings(type="sounddevice", block_size=512, fallback="none"))
    sink.start(ring)
    deadline = time.monotonic() + 20
    while ring.frames_read < len(clip) and time.monotonic() < deadline:
        time.sleep(0.01)
    healthy = sink.healthy()
    sink.stop()
    blocks, frames = sink.counters()
    print(json.dumps({"outputs": outputs, "sink": type(sink).__name__, "read": ring.frames_read,
                      "underrun_frames": frames, "healthy": [healthy, sink.healthy()]}))
    """
)


def test_a_short_clip_plays_through_portaudio_into_alsa_null(tmp_path) -> None:
    conf = tmp_path / "asound.conf"
    conf.write_text("pcm.!default { type null }\nctl.!default { type hw card 0 }\n")
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf))
    proc = subprocess.run(
        [sys.executable, "-c", PLAYER], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outputs"], "the ALSA null output is listed as a PortAudio device"
    assert result["sink"] == "SoundDeviceSink"
    assert result["read"] == 22050, "the callback consumed every frame of the clip"
    assert result["healthy"] == [True, False], "the stream is active until stopped"


def _has_sound_card() -> bool:
    try:
        return "no soundcards" not in Path("/proc/asound/cards").read_text()
    except OSError:
        return False


@pytest.mark.skipif(_has_sound_card(), reason="PortAudio lists this machine's own sound card")
def test_without_any_audio_device_the_sink_falls_back_to_the_file_sink(tmp_path) -> None:
    conf = tmp_path / "asound.conf"
    conf.write_text("pcm.!default { type hw card 99 }\n")  # a card that does not exist
    code = textwrap.dedent(
        f"""
        from musicmed_stream.player.sinks import SinkSettings, open_sink, SinkError
        sink = open_sink(SinkSettings(type="sounddevice", fallback="file", file={str(tmp_path / "r.wav")!r}))
        print(type(sink).__name__)
        try:
            open_sink(SinkSettings(type="sounddevice", fallback="none"))
        except SinkError as exc:
            print("error:", exc)
        """
    )
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "FileSink"
    assert lines[1].startswith("error: no audio output device")
    assert "falling back to the file sink" in proc.stderr
