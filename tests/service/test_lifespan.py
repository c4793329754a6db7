"""create_app(settings) on its own: the lifespan loads dataset, backbone, index and engine
from Settings alone (no shared resources), as `recranker serve` does."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from stack.settings import DEFAULT_ADAPTER
from tests.service.conftest import base_settings


def test_lifespan_loads_everything_from_settings(tmp_path, shared_data_dir, model_dir, redis_prefix):
    # base_model as a local checkpoint folder: reuses the session's converted model
    settings = base_settings(tmp_path, shared_data_dir, base_model=str(model_dir), backbone="pop")
    app = create_app(settings, key_prefix=redis_prefix)
    assert app.state.live is None  # nothing is loaded before start-up
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        comps = ready.json()["components"]
        assert "(base model)" in comps["model"]["detail"] and "1682 items (pop)" in comps["index"]["detail"]
        r = client.post("/v1/rank", json={"user_id": "1", "k": 1, "num_candidates": 2, "modes": ["pointwise"]})
        assert r.status_code == 200, r.text
        assert r.json()["degraded"] is False and len(r.json()["items"]) == 1
    assert app.state.live is None  # shut down cleanly


def test_missing_adapter_fails_start_up_with_a_clear_message(tmp_path, shared_data_dir, model_dir):
    settings = base_settings(tmp_path, shared_data_dir, base_model=str(model_dir), redis_url=None,
                             adapter=str(tmp_path / "no-such-adapter"))
    with pytest.raises(Exception, match="adapter folder .*no-such-adapter does not exist"):
        with TestClient(create_app(settings)):
            pass


def test_a_default_count_the_adapter_cannot_rank_fails_start_up(tmp_path, shared_data_dir, model_dir):
    # the shipped adapter's catalogue layout letters at most 20 candidates: a service whose
    # default count is 21 would refuse every request that does not set its own, so it does not start
    settings = base_settings(tmp_path, shared_data_dir, base_model=str(model_dir), redis_url=None,
                             adapter=str(DEFAULT_ADAPTER), num_candidates=21, max_candidates=30)
    with pytest.raises(Exception, match="RECRANKER_NUM_CANDIDATES=21: the adapter .* ranks at most 20 candidates"):
        with TestClient(create_app(settings)):
            pass


def test_requests_before_start_up_get_503(tmp_path, shared_data_dir):
    client = TestClient(create_app(base_settings(tmp_path, shared_data_dir, redis_url=None)))  # no `with`: no lifespan
    r = client.post("/v1/rank", json={"user_id": "1"})
    assert r.status_code == 503 and "not loaded yet" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["components"]["model"] == {"ok": False, "detail": "loading"}
