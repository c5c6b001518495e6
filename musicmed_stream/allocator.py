"""The C allocator tuned for a long-running audio process (glibc only; elsewhere nothing).

Clips are numpy arrays of a few MB, made and freed on several threads (engine, chain, feeder).
glibc's defaults suit that badly: after a large ``mmap``-ed block is freed it raises its mmap
threshold (up to 32 MB), so later clip-sized arrays come from the heap and fragment it, and every
thread may get an arena of its own. Measured with ``benchmarks/memory.py`` (15-min session): the
daemon's peak RSS 337 -> 260 MB, render 347 -> about 310 MiB, the same audio.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, now fixed: big arrays go back to the OS when freed
ARENA_MAX = 2


def limit_fragmentation() -> bool:
    """Fix glibc's mmap threshold and cap its arenas; returns whether it could (glibc only).

    Call once at process start, before the audio threads start."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): its own allocator stays
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_ARENA_MAX, ARENA_MAX))
    log.debug("allocator tuned: %s", done)
    return done


__all__ = ["limit_fragmentation"]
