"""Atomic writes: the mode of what they leave, default (the umask's) for renders, or exactly 0600."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from musicmed_stream.audio_io import (
    PRIVATE_FILE_MODE,
    AudioWriter,
    make_private,
    read_audio,
    write_audio,
    write_bytes_atomic,
    write_text_atomic,
)


@pytest.fixture
def permissive_umask() -> Iterator[int]:
    old = os.umask(0o002)
    try:
        yield 0o002
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


AUDIO = np.linspace(-0.5, 0.5, 200, dtype=np.float32).reshape(100, 2)


def test_writes_keep_the_umask_mode_by_default_and_exactly_the_mode_asked_for(
    tmp_path: Path, permissive_umask: int
) -> None:
    default = 0o666 & ~permissive_umask
    write_audio(tmp_path / "a.wav", AUDIO, 8000)
    write_audio(tmp_path / "p.wav", AUDIO, 8000, subtype="FLOAT", mode=PRIVATE_FILE_MODE)
    write_text_atomic(tmp_path / "a.txt", "x")
    write_text_atomic(tmp_path / "p.txt", "x", mode=PRIVATE_FILE_MODE)
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    write_bytes_atomic(tmp_path / "p.bin", b"x", mode=0o640)
    for mode_asked, name in [(None, "a.flac"), (PRIVATE_FILE_MODE, "p.flac")]:
        with AudioWriter(tmp_path / name, 8000, 2, mode=mode_asked) as writer:
            writer.write(AUDIO)
            writer.commit()
    modes = {p.name: mode(p) for p in tmp_path.iterdir()}
    assert modes == {
        "a.wav": default,
        "a.txt": default,
        "a.bin": default,
        "a.flac": default,
        "p.wav": 0o600,
        "p.txt": 0o600,
        "p.bin": 0o640,
        "p.flac": 0o600,
    }
    np.testing.assert_array_equal(read_audio(tmp_path / "p.wav")[0], AUDIO)


def test_a_private_write_replaces_a_looser_file(tmp_path: Path, permissive_umask: int) -> None:
    path = tmp_path / "session.json"
    path.write_text("old")
    path.chmod(0o644)
    write_text_atomic(path, "new", mode=PRIVATE_FILE_MODE)
    assert (path.read_text(), mode(path)) == ("new", 0o600)


def test_make_private_tightens_a_file_once_and_leaves_other_things_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("")
    path.chmod(0o644)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    fifo.chmod(0o644)
    with caplog.at_level(logging.INFO, logger="musicmed_stream.audio_io"):
        make_private(path)
        make_private(path)  # already private: nothing to say
        make_private(fifo)  # not a regular file (a device, a pipe): never touched
    assert (mode(path), mode(fifo)) == (0o600, 0o644)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and str(path) in lines[0] and "0644" in lines[0]
