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


class AudioWriter:
    """Write an audio file block by block, atomically: the blocks go to a temporary file in the
    same folder, renamed over ``path`` by :meth:`commit`; :meth:`abort` (or leaving the ``with``
    block by an exception) removes it, so no truncated file is ever left under the final name.

    Parameters
    ----------
    path : path-like
        ``.wav`` or ``.flac``.
    sample_rate, channels : int
    subtype : str, optional
        libsndfile subtype (``PCM_16``, ``PCM_24``, ``FLOAT``); default 16-bit PCM.
    """

    def __init__(
        self, path: str | os.PathLike[str], sample_rate: int, channels: int, subtype: str | None = None
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FORMATS:
            raise AudioError(f"unsupported audio format {suffix!r} for {self.path}; use .wav or .flac")
        fmt, default_subtype = FORMATS[suffix]
        self.frames = 0
        self.peak = 0.0
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        os.close(fd)
        try:
            self._file: sf.SoundFile | None = sf.SoundFile(
                self._tmp, "w", sample_rate, channels, subtype or default_subtype, format=fmt
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self.abort()
            raise AudioError(f"cannot write {self.path}: {exc}") from exc

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` ``(frames, channels)``; tracks the peak sample."""
        assert self._file is not None, "writer is closed"
        if block.shape[0] == 0:
            return
        try:
            self._file.write(block)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self.abort()
            raise AudioError(f"cannot write {self.path}: {exc}") from exc
        self.frames += block.shape[0]
        self.peak = max(self.peak, float(block.max()), -float(block.min()))

    def commit(self) -> Path:
        """Complete the file and put it under its name."""
        assert self._file is not None, "writer is closed"
        try:
            self._file.close()
            self._file = None
            os.chmod(self._tmp, _umask_mode())
            os.replace(self._tmp, self.path)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self.abort()
            raise AudioError(f"cannot write {self.path}: {exc}") from exc
        return self.path

    def abort(self) -> None:
        """Drop what was written."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None or self._file is not None:
            self.abort()
