"""RECRANKER_ENGINE=vllm end to end: the service built by the composition root hands the
configured adapter to the vLLM engine, which asks vLLM for the LoRA module by name (the
request's "model", as ``vllm serve --lora-modules NAME=PATH`` serves it), and responses
and cache keys carry the adapter's name and revision.

vLLM cannot run here, so a local HTTP server answers in its /v1/completions shape
(tests.ranker.test_engine_vllm.FakeVLLM) and records every request.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ranker.adapter import adapter_revision
from service.main import create_app
from service.resources import load_resources
from stack.settings import DEFAULT_ADAPTER
from tests.ranker.test_engine_vllm import FakeVLLM
from tests.service.conftest import base_settings


@pytest.fixture(scope="module")
def fake_vllm(model_dir: Path):
    from transformers import AutoTokenizer

    server = FakeVLLM(AutoTokenizer.from_pretrained(model_dir))
    yield server
    server.close()


def test_vllm_engine_gets_the_adapter_by_name(fake_vllm: FakeVLLM, model_dir: Path, shared_data_dir: Path,
                                              tmp_path: Path, redis_prefix: str) -> None:
    settings = base_settings(tmp_path, shared_data_dir, engine="vllm", vllm_url=fake_vllm.url,
                             base_model=str(model_dir), adapter=str(DEFAULT_ADAPTER), backbone="pop",
                             microbatch=False)
    resources = load_resources(settings)  # the same loader `recranker serve` uses
    engine = resources.engine
    revision = adapter_revision(DEFAULT_ADAPTER)
    assert (engine.adapter_name, engine.adapter_revision) == (DEFAULT_ADAPTER.name, revision)
    assert (resources.served.adapter, resources.served.adapter_revision) == (DEFAULT_ADAPTER.name, revision)
    # the adapter's tuned hybrid weights reach the ranker (not the defaults)
    assert resources.ranker.weights.to_dict() != {"pointwise": 1 / 3, "pairwise": 1 / 3, "listwise": 1 / 3,
                                                  "backbone": 0.3}

    fake_vllm.requests.clear()
    with TestClient(create_app(settings, resources=resources, key_prefix=redis_prefix + "vllm:")) as client:
        # explicit weights: the shipped ones may serve the backbone alone (no LLM call at all)
        body = {"user_id": "1", "k": 2, "num_candidates": 3,
                "weights": {"pointwise": 0.3, "pairwise": 0.3, "listwise": 0.3, "backbone": 0.3}}
        first = client.post("/v1/rank", json=body)
        assert first.status_code == 200, first.text
        out = first.json()
        assert (out["adapter"], out["adapter_revision"]) == (DEFAULT_ADAPTER.name, revision)
        assert not out["degraded"] and out["model"] == str(model_dir)
        sent = [r["model"] for r in fake_vllm.requests]
        assert sent and set(sent) == {DEFAULT_ADAPTER.name}  # every scoring call named the LoRA module
        n_calls = len(fake_vllm.requests)
        again = client.post("/v1/rank", json=body).json()
        assert again["cached"] is True and again["adapter_revision"] == revision
        assert len(fake_vllm.requests) == n_calls  # served from the cache keyed by the adapter


def test_vllm_engine_without_adapter_names_the_base_model(fake_vllm: FakeVLLM, model_dir: Path) -> None:
    from ranker.engines.base import ScoringPrompt
    from ranker.engines.vllm import VLLMEngine

    engine = VLLMEngine(fake_vllm.url, "base-model", model_dir)
    fake_vllm.requests.clear()
    engine.score([ScoringPrompt("Rate: ", "5?")], ("Yes", "No"))
    assert [r["model"] for r in fake_vllm.requests] == ["base-model"]
    assert engine.adapter_name is None and engine.adapter_revision is None
    engine.close()
