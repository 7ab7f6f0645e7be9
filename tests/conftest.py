"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; TALKRIG_SHARED points elsewhere (a git worktree has another parent)
SHARED = Path(os.environ.get("TALKRIG_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


class SpeechClip(NamedTuple):
    path: Path
    transcript: str


def _shipped(name: str) -> SpeechClip:
    audio = REPO / "examples" / name
    return SpeechClip(audio, audio.with_suffix(".txt").read_text(encoding="utf-8").strip())


@pytest.fixture(scope="session")
def jfk() -> SpeechClip:
    """Real speech shipped in the repository (examples/jfk.flac, 11 s, 16 kHz, and its transcript), for tests
    that need some real recording: they run everywhere, ../shared or not."""
    return _shipped("jfk.flac")


@pytest.fixture(scope="session")
def hello_flite() -> SpeechClip:
    """The shipped 1.4 s Flite clip ("Hello from Talk Rig.") and its transcript: short synthetic speech."""
    return _shipped("hello_flite.flac")


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
