"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; TALKRIG_SHARED points elsewhere (a git worktree has another parent)
SHARED = Path(os.environ.get("TALKRIG_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (real recordings, reference, face model). CI always has it; a user's clone may not."""
    if not (SHARED / "data" / "speech" / "MANIFEST.json").is_file():
        pytest.skip(f"../shared not present at {SHARED}: these tests use the shared speech recordings")
    return SHARED


@pytest.fixture(scope="session")
def speech_manifest(shared_dir: Path) -> dict:
    import json

    return json.loads((shared_dir / "data" / "speech" / "MANIFEST.json").read_text())


@pytest.fixture(scope="session")
def livelink_dir() -> Path:
    """Real Live Link Face takes recorded on an iPhone (../shared/data/motion_reference/livelink)."""
    d = SHARED / "data" / "motion_reference" / "livelink"
    if not d.is_dir() or not any(d.rglob("*.csv")):
        pytest.skip(f"{d} not present: these tests read the real Live Link Face takes in ../shared")
    return d
