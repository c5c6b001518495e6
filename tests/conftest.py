"""Shared fixtures. The MTG-Jamendo metadata lives beside the checkout, never inside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed example sequence (a failure there reproduces exactly) and no
# per-example deadline (a loaded 2-core machine is slow); local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
JAMENDO_DIR = REPO_ROOT.parent / "shared" / "data" / "mtg-jamendo"


@pytest.fixture(scope="session")
def jamendo_dir() -> Path:
    """The MTG-Jamendo tag metadata folder (``../shared/data/mtg-jamendo``)."""
    if not (JAMENDO_DIR / "autotagging_moodtheme.tsv").is_file():
        pytest.fail(f"MTG-Jamendo metadata not found at {JAMENDO_DIR}")
    return JAMENDO_DIR


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory) -> Path:
    """A tiny random-weight MusicGen checkpoint (model + processor), saved once per test session."""
    pytest.importorskip("transformers")
    from tiny_musicgen import save_tiny_musicgen

    return save_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))
