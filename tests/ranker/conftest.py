"""Shared fixtures for ranker tests: the real bundled LLM, provisioned and loaded once.

The converted checkpoint (~517 MB, ~30 s to convert) is kept in pytest's cache folder
(.pytest_cache/, gitignored) so later sessions load it in ~2 s; set
RECRANKER_TEST_MODEL_CACHE to keep it elsewhere (e.g. a CI cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ranker.engines.hf import HFEngine
from ranker.model import BUNDLED_MODEL, prepare_model


@pytest.fixture(scope="session")
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("RECRANKER_TEST_MODEL_CACHE")
    if env:
        cache = Path(env)
    elif request.config.cache is not None:
        cache = Path(request.config.cache.mkdir("recranker-models"))
    else:
        cache = tmp_path_factory.mktemp("recranker-models")
    return prepare_model(BUNDLED_MODEL, cache)


@pytest.fixture(scope="session")
def hf_engine(model_dir: Path) -> HFEngine:
    """ONE engine for the whole session: don't mutate it (use monkeypatch for attributes)."""
    return HFEngine(model_dir, device="cpu")
