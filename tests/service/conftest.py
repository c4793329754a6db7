"""Service fixtures: the REAL bundled LLM (loaded once per session), a pop backbone on
ML-100K, and the REAL Redis at 127.0.0.1:6379 under a key prefix unique to this run
(deleted at the end, so no test depends on leftover state).

Requests are kept small (3 candidates, 1 pairwise comparison, 1 listwise order, a short
history budget) so one LLM-backed request costs about a second on a 2-core CPU.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
import torch
from fastapi.testclient import TestClient

from candidate_gen.data import load_movielens_100k
from candidate_gen.pop import PopBackbone
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import leave_one_out
from ranker.engines.hf import HFEngine
from ranker.ensemble import EnsembleWeights
from ranker.ranker import Ranker
from service.main import create_app
from service.pipeline import ServedModel
from service.resources import Resources
from stack.settings import Settings, ranker_config
from tests.service.fakes import FakeStack

REDIS_URL = os.environ.get("RECRANKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while these tests run: the requests are tiny, and on a shared
    2-core machine OpenMP spin-waiting made two threads 5x slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.fail(f"the service tests need the real Redis at {REDIS_URL} ({e}); "
                    "set RECRANKER_TEST_REDIS_URL to point elsewhere")
    prefix = f"recranker-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def base_settings(tmp: Path, data_dir: Path, **overrides) -> Settings:
    values = dict(
        home=tmp, data_dir=data_dir, dataset="ml-100k", backbone="pop", adapter=None, device="cpu",
        redis_url=REDIS_URL, api_key=None, num_candidates=3, top_k=2, max_candidates=5, max_batch_requests=4,
        cache_ttl_s=60, user_history_max=20, request_timeout_s=120.0, microbatch=True,
        microbatch_max_wait_ms=5.0, microbatch_max_requests=8, queue_max=16,
        pairwise_budget=1, listwise_shuffles=1, history_token_budget=64, use_hints=True,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def resources(hf_engine: HFEngine, ml100k_dir: Path, shared_data_dir: Path, tmp_path_factory) -> Resources:
    dataset = load_movielens_100k(ml100k_dir)
    split = leave_one_out(dataset)
    _, items = split.train_interactions()
    backbone = PopBackbone.fit(items, dataset.n_items)
    generator = CandidateGenerator.from_backbone(backbone, "exact")
    engine = hf_engine  # the session's one loaded model
    settings = base_settings(tmp_path_factory.mktemp("home"), shared_data_dir)
    ranker = Ranker(engine, ranker_config(settings), EnsembleWeights())
    served = ServedModel(engine.model_name, None, None, "pop", dataset.fingerprint)
    return Resources(dataset, split, backbone, generator, engine, ranker, served)


@pytest.fixture
def make_client(resources: Resources, redis_prefix: str, tmp_path: Path,
                shared_data_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """make_client(**settings_overrides) -> a started TestClient over the shared model."""
    with ExitStack() as stack:
        def make(**overrides) -> TestClient:
            settings = base_settings(tmp_path, shared_data_dir, **overrides)
            app = create_app(settings, resources=resources, key_prefix=redis_prefix)
            return stack.enter_context(TestClient(app))
        yield make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def new_user() -> str:
    """A user id no dataset user and no earlier test has."""
    return f"test-user-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def fake_stack(ml100k_dir: Path) -> FakeStack:
    """Dataset, split and backbone for the apps served by a fake engine (fuzz, faults)."""
    return FakeStack(ml100k_dir)
