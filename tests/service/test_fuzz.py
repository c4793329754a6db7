"""Seeded fuzz run over every endpoint of the OpenAPI document (see tests/service/fuzzing.py
for the generators and what each answer must satisfy), against the service under a real
uvicorn on loopback with the real Redis; the LLM is the fast fake engine so that a few
hundred cases fit in CI. RECRANKER_FUZZ_CASES / RECRANKER_FUZZ_SEED change the size and
seed; bench/bench_fuzz.py is the long run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.main import create_app
from tests.service.conftest import base_settings
from tests.service.fuzzing import fuzz, operations, pools_of
from tests.service.live import LiveServer

N_CASES = int(os.environ.get("RECRANKER_FUZZ_CASES", "300"))
SEED = int(os.environ.get("RECRANKER_FUZZ_SEED", "20261202"))


def fuzz_settings(home: Path, data_dir: Path, **overrides):
    """Small limits, so the size mutations cross them cheaply."""
    values = dict(max_candidates=30, num_candidates=5, top_k=3, max_batch_requests=4, user_history_max=50,
                  max_body_bytes=64 * 1024, request_timeout_s=10.0, body_timeout_s=5.0)
    return base_settings(home, data_dir, **(values | overrides))


@pytest.fixture(scope="module")
def served(fake_stack, redis_prefix, shared_data_dir, tmp_path_factory) -> Iterator[tuple]:
    settings = fuzz_settings(tmp_path_factory.mktemp("fuzz"), shared_data_dir)
    app = create_app(settings, resources=fake_stack.resources(), key_prefix=redis_prefix + "fuzz:")
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        yield app, client


def test_fuzz_every_endpoint(served, fake_stack):
    app, client = served
    ops = operations(app.openapi())
    tally = fuzz(client, ops, pools_of(fake_stack.dataset), N_CASES, SEED)
    print("fuzz:", tally.as_dict())
    assert not tally.problems, "\n".join(tally.problems[:10])
    assert tally.cases >= N_CASES * 0.8, tally.cases
    assert set(tally.by_op) == {o.name for o in ops}, "an endpoint got no cases"
    assert not any(s >= 500 for s in tally.by_status)
    ok = sum(v for s, v in tally.by_status.items() if 200 <= s < 300)
    assert ok >= 0.1 * tally.requests, f"too few cases got past validation: {tally.by_status}"
    assert any(s == 422 for s in tally.by_status) and any(s == 415 for s in tally.by_status)
