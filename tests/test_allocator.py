"""The allocator tuning the daemon and render apply at start (its effect is measured by
``benchmarks/memory.py``, not here)."""

from __future__ import annotations

import platform

import pytest

from musicmed_stream.allocator import limit_fragmentation


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_the_settings_and_taking_them_again_is_harmless() -> None:
    assert limit_fragmentation() is True
    assert limit_fragmentation() is True
