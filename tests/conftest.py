"""Shared fixtures: MovieLens-100K and the real bundled LLM, provisioned once per session.

MovieLens-100K is looked up, in order: ``$RECRANKER_DATA_DIR/ml-100k`` (the same variable
the service and CLI read); ``../shared/data/ml-100k`` beside the clone (a read-only team
copy); a copy this suite downloaded earlier into pytest's cache folder; else the official
archive is downloaded there (MD5-checked). Without data and without internet every test
that needs it fails with a message naming RECRANKER_DATA_DIR.

The converted checkpoint (~517 MB, ~30 s to convert) is kept in pytest's cache folder
(.pytest_cache/, gitignored) so later runs load it in ~2 s; set RECRANKER_TEST_MODEL_CACHE
to keep it elsewhere (e.g. a CI cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from candidate_gen.data import ML100K_FILES, DataError
from candidate_gen.download import ML100K_URL, download_ml100k
from ranker.engines.hf import HFEngine
from ranker.model import BUNDLED_MODEL, prepare_model

REPO = Path(__file__).resolve().parent.parent


def _has_ml100k(data_dir: Path) -> bool:
    return all((data_dir / "ml-100k" / f).is_file() for f in ML100K_FILES)


def find_data_dir(cache_dir: Path | None, beside: Path = REPO.parent / "shared" / "data",
                  url: str = ML100K_URL) -> Path:
    """The folder holding ml-100k/ for the tests (see the module docstring for the order);
    calls pytest.fail naming RECRANKER_DATA_DIR when there is none and none can be fetched."""
    env = os.environ.get("RECRANKER_DATA_DIR")
    if env:
        if not _has_ml100k(Path(env)):
            pytest.fail(f"RECRANKER_DATA_DIR={env} has no complete ml-100k/ folder "
                        f"(expected {', '.join(ML100K_FILES)} in {Path(env) / 'ml-100k'})")
        return Path(env)
    for candidate in (beside, cache_dir):
        if candidate is not None and _has_ml100k(candidate):
            return candidate
    if cache_dir is None:
        pytest.fail("MovieLens-100K not found: set RECRANKER_DATA_DIR to a folder holding ml-100k/")
    try:
        download_ml100k(cache_dir, url=url, timeout=30)
    except DataError as e:
        pytest.fail(f"MovieLens-100K not found and the download failed ({e}): set RECRANKER_DATA_DIR "
                    "to a folder holding ml-100k/ (unpacked ml-100k.zip from GroupLens)")
    return cache_dir


@pytest.fixture(scope="session")
def shared_data_dir(request: pytest.FixtureRequest) -> Path:
    """The data folder (holding ml-100k/) every test reads; read-only."""
    cache = request.config.cache
    return find_data_dir(Path(cache.mkdir("recranker-data")) if cache is not None else None)


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
