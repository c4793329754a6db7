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
from hypothesis import HealthCheck, given, seed, settings

from service.main import create_app
from tests.service.conftest import base_settings
from tests.service.fakes import FakeStack
from tests.service.fuzzing import Operation, Pools, Tally, cases, operations, run_case
from tests.service.live import LiveServer

N_CASES = int(os.environ.get("RECRANKER_FUZZ_CASES", "300"))
SEED = int(os.environ.get("RECRANKER_FUZZ_SEED", "20261202"))


def fuzz_settings(home: Path, data_dir: Path, **overrides):
    """Small limits, so the size mutations cross them cheaply."""
    values = dict(max_candidates=30, num_candidates=5, top_k=3, max_batch_requests=4, user_history_max=50,
                  max_body_bytes=64 * 1024, request_timeout_s=10.0, body_timeout_s=5.0)
    return base_settings(home, data_dir, **(values | overrides))


def pools(stack: FakeStack) -> Pools:
    ds = stack.dataset
    return Pools(users=tuple(str(u) for u in list(ds.user_ids)[:50]), items=tuple(str(i) for i in list(ds.item_ids)[:300]),
                 titles=tuple(ds.titles[:300]))


@pytest.fixture(scope="module")
def served(fake_stack, redis_prefix, shared_data_dir, tmp_path_factory) -> Iterator[tuple]:
    settings = fuzz_settings(tmp_path_factory.mktemp("fuzz"), shared_data_dir)
    app = create_app(settings, resources=fake_stack.resources(), key_prefix=redis_prefix + "fuzz:")
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        yield app, client


def fuzz(client: httpx.Client, ops: list[Operation], pool: Pools, n_cases: int, seed_: int,
         api_key: str | None = None) -> Tally:
    """``n_cases`` cases spread over the operations (those without a body get a few: their
    only input is the request line), each operation its own seeded hypothesis run."""
    tally = Tally()
    body_ops = [o for o in ops if o.body_schema is not None]
    per_op = max(1, (n_cases - 3 * (len(ops) - len(body_ops))) // max(1, len(body_ops)))
    for n, op in enumerate(ops):
        @seed(seed_ + n)
        @settings(max_examples=per_op if op.body_schema is not None else 3, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases(op, pool))
        def run(case):
            run_case(client, case, tally, api_key)  # problems are collected, not raised: one report, no shrinking

        run()
    return tally


def test_fuzz_every_endpoint(served, fake_stack):
    app, client = served
    ops = operations(app.openapi())
    tally = fuzz(client, ops, pools(fake_stack), N_CASES, SEED)
    print("fuzz:", tally.as_dict())
    assert not tally.problems, "\n".join(tally.problems[:10])
    assert tally.cases >= N_CASES * 0.8, tally.cases
    assert set(tally.by_op) == {o.name for o in ops}, "an endpoint got no cases"
    assert not any(s >= 500 for s in tally.by_status)
    ok = sum(v for s, v in tally.by_status.items() if 200 <= s < 300)
    assert ok >= 0.1 * tally.requests, f"too few cases got past validation: {tally.by_status}"
    assert any(s == 422 for s in tally.by_status) and any(s == 415 for s in tally.by_status)
