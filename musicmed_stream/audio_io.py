"""Reading and writing audio files. Writes are atomic: a file is either complete or absent."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from musicmed_stream.errors import AudioError

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}


def _umask_mode() -> int:
    """File mode a plain ``open()`` would give (mkstemp files are 0600, too strict for user outputs)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``(frames, channels)``.

    Raises
    ------
    AudioError
        If the file is missing, empty or cannot be decoded.
    """
    try:
        audio, sample_rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"cannot read audio file {path}: {exc}") from exc
    if audio.shape[0] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"audio file {path} holds non-finite samples")
    return audio, int(sample_rate)


def write_audio(
    path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int, subtype: str | None = None
) -> Path:
    """Write ``audio`` to ``path`` (format from the suffix: .wav or .flac) atomically.

    The data goes to a temporary file in the same folder, which is renamed over ``path`` only
    once complete, so a full disk or a crash never leaves a truncated file under the final name.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise AudioError(f"unsupported audio format {suffix!r} for {path}; use .wav or .flac")
    fmt, default_subtype = FORMATS[suffix]
    data = np.asarray(audio, dtype=np.float32)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, data, sample_rate, format=fmt, subtype=subtype or default_subtype)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise AudioError(f"cannot write {path}: {exc}") from exc
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically (temporary file + rename)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a binary file (e.g. a PNG) atomically (temporary file + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
