"""Reading and writing audio files. Writes are atomic: a file is either complete or absent.

Every writer takes a ``mode``: by default a new file gets the mode a plain ``open()`` would give
(``0666`` less the umask), for the renders a user shares; the daemon's state (session record,
tails) passes :data:`PRIVATE_FILE_MODE`, set exactly whatever the umask.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from musicmed_stream.errors import AudioError

log = logging.getLogger(__name__)

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}
PRIVATE_FILE_MODE = 0o600  # the daemon's state: the listener's sessions are nobody else's business


def _umask_mode() -> int:
    """File mode a plain ``open()`` would give (mkstemp files are 0600, too strict for user outputs)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _file_mode(mode: int | None) -> int:
    return _umask_mode() if mode is None else mode


def make_private(target: int | str | os.PathLike[str], name: object = None) -> None:
    """Set a regular file (a path or an open descriptor) to :data:`PRIVATE_FILE_MODE`. A file that
    others could open is said at INFO; one that cannot be changed (another user's) at WARNING, and
    left as it is; anything but a regular file (``/dev/null``) is left alone. ``name`` names a
    descriptor's file in these lines."""
    name = target if name is None else name
    try:
        status = os.stat(target)
        mode = stat.S_IMODE(status.st_mode)
        if mode == PRIVATE_FILE_MODE or not stat.S_ISREG(status.st_mode):
            return
        os.chmod(target, PRIVATE_FILE_MODE)
    except OSError as exc:
        log.warning("cannot make %s private: %s", name, exc.strerror or exc)
        return
    if mode & 0o077:
        log.info("%s was open to others (mode %04o): now %04o", name, mode, PRIVATE_FILE_MODE)


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
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
    mode: int | None = None,
) -> Path:
    """Write ``audio`` to ``path`` (format from the suffix: .wav or .flac) atomically.

    The data goes to a temporary file in the same folder, which is renamed over ``path`` only
    once complete, so a full disk or a crash never leaves a truncated file under the final name.
    ``mode``: the file's permission bits (default: ``0666`` less the umask).
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
        os.chmod(tmp, _file_mode(mode))
        os.replace(tmp, path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise AudioError(f"cannot write {path}: {exc}") from exc
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str, mode: int | None = None) -> Path:
    """Write a text file atomically (temporary file + rename); ``mode`` as for :func:`write_audio`."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> Path:
    """Write a binary file (e.g. a PNG) atomically (temporary file + rename); ``mode`` as for
    :func:`write_audio`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, _file_mode(mode))
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
    mode : int, optional
        The file's permission bits; default ``0666`` less the umask.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        subtype: str | None = None,
        mode: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.mode = mode
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
            os.chmod(self._tmp, _file_mode(self.mode))
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
