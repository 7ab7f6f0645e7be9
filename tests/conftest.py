"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
