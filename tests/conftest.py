"""Shared fixtures: the read-only MovieLens copy (../shared beside the repo) and the real
bundled LLM, provisioned and loaded once per session.

The converted checkpoint (~517 MB, ~30 s to convert) is kept in pytest's cache folder
(.pytest_cache/, gitignored) so later runs load it in ~2 s; set RECRANKER_TEST_MODEL_CACHE
to keep it elsewhere (e.g. a CI cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ranker.engines.hf import HFEngine
from ranker.model import BUNDLED_MODEL, prepare_model

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
    """ONE engine for the whole session: don't mutate it (use monkeypatch for attributes).
    float32, so exactness checks (packed vs full prompts, batched vs alone) are tight;
    bf16 behaviour is tested on its own engine (``hf_engine_bf16``)."""
    return HFEngine(model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def hf_engine_bf16(model_dir: Path) -> HFEngine:
    return HFEngine(model_dir, device="cpu", dtype="bfloat16")
