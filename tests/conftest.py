"""Shared fixtures: where the read-only MovieLens copy lives (../shared beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared_data() -> Path:
    return Path(os.environ.get("RECRANKER_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = _shared_data()
    if not (path / "ml-100k" / "u.data").is_file():
        pytest.fail(f"MovieLens-100K not found under {path} (set RECRANKER_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def ml100k_dir(shared_data_dir) -> Path:
    return shared_data_dir / "ml-100k"
