"""The served weight set decides what the LLM does: zero-weight modes cost nothing, hints off
uses its own weights or is refused, and /readyz says whether the LLM is used at all."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ranker.ensemble import EnsembleWeights, WeightSet
from ranker.ranker import Ranker
from service.main import create_app
from tests.service.conftest import base_settings

BACKBONE_ONLY = EnsembleWeights(0, 0, 0, 1)
POINTWISE = EnsembleWeights(1, 0, 0, 0.3)


@pytest.fixture
def client_with(resources, redis_prefix, tmp_path: Path, shared_data_dir: Path):
    clients = []

    def make(weights: WeightSet) -> TestClient:
        ranker = Ranker(resources.engine, resources.ranker.config, weights)
        res = dataclasses.replace(resources, ranker=ranker)
        app = create_app(base_settings(tmp_path, shared_data_dir), resources=res, key_prefix=redis_prefix)
        c = TestClient(app)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_backbone_only_weights_run_no_llm_and_readyz_says_so(client_with):
    c = client_with(WeightSet(hints_on=BACKBONE_ONLY, hints_off=BACKBONE_ONLY, chosen=True,
                              llm_helps={"hints_on": False, "hints_off": False}))
    ready = c.get("/readyz").json()
    assert ready["llm_used"] == {"hints_on": False, "hints_off": False}
    assert "backbone only" in ready["components"]["llm"]["detail"]
    r = c.post("/v1/rank", json={"user_id": "7", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["llm_calls"] == 0 and body["llm_tokens"] == 0 and not body["degraded"]
    scores = [it["backbone_score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(it["mode_scores"] == {} for it in body["items"])
    # a client's own weights bring the LLM back for that request
    r = c.post("/v1/rank", json={"user_id": "7", "k": 3, "modes": ["pointwise"], "weights": {"pointwise": 1}})
    assert r.status_code == 200 and r.json()["llm_calls"] >= 1
    assert set(r.json()["items"][0]["mode_scores"]) == {"pointwise"}


def test_hints_off_without_its_weights_is_refused_and_with_them_served(client_with):
    on_only = client_with(WeightSet(hints_on=POINTWISE, chosen=True))  # the old flat file's meaning
    assert on_only.get("/readyz").json()["llm_used"] == {"hints_on": True, "hints_off": None}
    r = on_only.post("/v1/rank", json={"user_id": "7", "k": 2, "use_hints": False})
    assert r.status_code == 422 and "hints off" in r.json()["detail"] and "use_hints" in r.json()["detail"]
    r = on_only.post("/v1/rank", json={"user_id": "7", "k": 2, "use_hints": False, "weights": {"backbone": 1}})
    assert r.status_code == 200  # the client's own weights may be combined with hints off
    r = on_only.post("/v1/rank", json={"user_id": "7", "k": 2})
    assert r.status_code == 200 and set(r.json()["items"][0]["mode_scores"]) == {"pointwise"}

    both = client_with(WeightSet(hints_on=POINTWISE, hints_off=BACKBONE_ONLY, chosen=True))
    r = both.post("/v1/rank", json={"user_id": "7", "k": 2, "use_hints": False})
    assert r.status_code == 200 and r.json()["llm_calls"] == 0  # hints off: its own (backbone-only) weights


def test_weights_chosen_over_another_backbone_are_not_served_over_this_one(client_with):
    chosen_over_sasrec = WeightSet(hints_on=POINTWISE, hints_off=POINTWISE, chosen=True,
                                   llm_helps={"hints_on": True, "hints_off": True},
                                   evidence={key: {"backbone_model": "sasrec"} for key in ("hints_on", "hints_off")})
    c = client_with(chosen_over_sasrec.served_over("pop"))  # as stack.build_ranker serves it over pop
    ready = c.get("/readyz").json()
    assert ready["llm_used"] == {"hints_on": False, "hints_off": False}
    assert "weights chosen over sasrec candidates, this stack serves pop" in ready["components"]["llm"]["detail"]
    body = c.post("/v1/rank", json={"user_id": "7", "k": 3}).json()
    assert body["llm_calls"] == 0 and not body["degraded"]


def test_readyz_names_weights_chosen_with_other_numerics_than_the_engines(client_with, resources):
    info = resources.engine.info
    elsewhere = {"device": "cpu", "dtype": "float16" if info["dtype"] != "float16" else "float32", "bf16_units": None}
    c = client_with(WeightSet(hints_on=POINTWISE, hints_off=BACKBONE_ONLY, chosen=True,
                              evidence={"hints_on": {"scored_on": elsewhere}}))
    ready = c.get("/readyz").json()
    assert ready["ready"] and ready["llm_used"] == {"hints_on": True, "hints_off": False}
    detail = ready["components"]["llm"]["detail"]
    assert f"hints_on: weights chosen on scores computed as {elsewhere['dtype']} on cpu" in detail
    assert f"this engine computes {info['dtype']}" in detail
    same = client_with(WeightSet(hints_on=POINTWISE, chosen=True, evidence={"hints_on": {"scored_on": info}}))
    assert "chosen on scores computed" not in same.get("/readyz").json()["components"]["llm"]["detail"]
