"""Every error path: status code and a message that names what is wrong."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.service.conftest import CLOSED_PORT_URL, new_user


def _detail(r) -> str:
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    return body["detail"]


def _message(r) -> str:
    """Cohere-shaped routes (/v1/rerank, /v2/rerank) answer {"message"}: what the Cohere SDK reads."""
    body = r.json()
    assert set(body) == {"message"} and isinstance(body["message"], str), body
    return body["message"]


def test_unknown_user_without_history_is_404(client):
    user = new_user()
    r = client.post("/v1/rank", json={"user_id": user})
    assert r.status_code == 404
    assert f"unknown user '{user}'" in _detail(r) and "/v1/events" in _detail(r)
    r = client.post("/v1/rerank", json={"query": user, "documents": ["50"]})
    assert r.status_code == 404 and user in _message(r)


def test_unknown_user_in_a_batch_names_its_index(client):
    r = client.post("/v1/rank/batch", json={"requests": [{"user_id": "1"}, {"user_id": "nobody-x"}]})
    assert r.status_code == 404 and _detail(r).startswith("requests[1]: unknown user 'nobody-x'")


def test_unknown_items_without_title_are_422_naming_the_id(client):
    r = client.post("/v1/rank", json={"user_id": "1", "candidates": ["50", "99999"]})
    assert r.status_code == 422
    assert _detail(r).startswith("candidates[1]: unknown item id '99999'") and "title" in _detail(r)
    r = client.post("/v1/rank", json={"user_id": "1", "history": [{"item_id": "nope", "rating": 4}]})
    assert r.status_code == 422 and _detail(r).startswith("history[0]: unknown item id 'nope'")
    r = client.post("/v1/rerank", json={"query": "1", "documents": [{"id": "nope"}]})
    assert r.status_code == 400 and _message(r).startswith("documents[0]: unknown item id 'nope'")
    r = client.post("/v1/events", json={"user_id": "1", "events": [{"item_id": "50"}, {"item_id": "zz", "rating": 5}]})
    assert r.status_code == 422 and _detail(r).startswith("events[1]: unknown item id 'zz'")
    r = client.post("/v1/rank", json={"user_id": "1", "candidates": ["50", 50]})
    assert r.status_code == 422 and "'50' appears more than once" in _detail(r)


def test_malformed_json_and_wrong_types_are_422_naming_the_field(client):
    r = client.post("/v1/rank", content=b'{"user_id": "1",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in _detail(r)
    r = client.post("/v1/rank", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and _detail(r) == "request body must be a JSON object"
    r = client.post("/v1/rank", json={"user_id": "1", "k": "three"})
    assert r.status_code == 422 and _detail(r).startswith("k: ")
    r = client.post("/v1/rank", json={"user_id": "1", "k": 0})
    assert r.status_code == 422 and _detail(r) == "k: Input should be greater than or equal to 1"
    r = client.post("/v1/rank", json={"user_id": "1", "modes": ["pointwise", "bestwise"]})
    assert r.status_code == 422 and _detail(r).startswith("modes[1]: ")
    r = client.post("/v1/rank", json={"user_id": "1", "modes": []})
    assert r.status_code == 422 and _detail(r).startswith("modes: ")
    r = client.post("/v1/rank", json={"user_id": "1", "candidate": ["50"]})
    assert r.status_code == 422 and _detail(r) == "candidate: unknown field"
    r = client.post("/v1/rank", json={"user_id": "1", "candidates": [{"item_id": "50", "titel": "x"}]})
    assert r.status_code == 422 and _detail(r) == "candidates[0].titel: unknown field"
    r = client.post("/v1/rank", json={"user_id": "1", "weights": {"pointwise": -1}})
    assert r.status_code == 422 and _detail(r).startswith("weights.pointwise: ")
    r = client.post("/v1/events", json={"user_id": "1", "events": [{"item_id": "50", "rating": 9}]})
    assert r.status_code == 422 and _detail(r).startswith("events[0].rating: ")
    r = client.post("/v1/rank", json={"k": 2})
    assert r.status_code == 422 and _detail(r) == "user_id: field required"


def test_limits_are_422_with_the_limit(client):
    r = client.post("/v1/rank", json={"user_id": "1", "candidates": [str(i) for i in range(1, 7)]})
    assert r.status_code == 422 and _detail(r) == "candidates: 6 given, the limit is 5"
    r = client.post("/v1/rank", json={"user_id": "1", "num_candidates": 6})
    assert r.status_code == 422 and _detail(r) == "num_candidates: 6 given, the limit is 5"
    r = client.post("/v1/rank/batch", json={"requests": [{"user_id": "1"}] * 5})
    assert r.status_code == 422 and _detail(r) == "requests: 5 given, the limit is 4"
    r = client.post("/v1/rerank", json={"query": "1", "documents": [str(i) for i in range(1, 7)]})
    assert r.status_code == 400 and _message(r) == "documents: 6 given, the limit is 5"
    r = client.post("/v1/events", json={"user_id": "1", "events": [{"item_id": "1"}] * 21})
    assert r.status_code == 422 and _detail(r) == "events: 21 given, the limit is 20"


def test_body_over_the_limit_is_413(make_client):
    client = make_client(max_body_bytes=2048)
    big = {"user_id": "1", "history": [{"item_id": "50", "title": "x" * 200}] * 20}
    r = client.post("/v1/rank", json=big)
    assert r.status_code == 413 and "limit is 2048 bytes" in _detail(r)
    # without Content-Length (chunked upload) the limit holds too
    chunks = iter([json.dumps(big).encode()[i:i + 512] for i in range(0, 6000, 512)])
    r = client.post("/v1/rank", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/v1/rank", json={"user_id": new_user()}).status_code == 404  # small bodies pass


def test_api_key_guards_v1_but_not_probes(make_client):
    client = make_client(api_key="s3cret")
    body = {"user_id": "1", "events": [{"item_id": "50", "rating": 4}]}
    r = client.post("/v1/events", json=body)
    assert r.status_code == 401
    assert _detail(r) == "missing API key: send X-API-Key or Authorization: Bearer <key>"
    r = client.post("/v1/events", json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and _detail(r) == "invalid API key"
    r = client.post("/v1/rank", json={"user_id": "1"}, headers={"X-API-Key": "s3cre"})
    assert r.status_code == 401
    r = client.post("/v1/events", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and _detail(r) == "invalid API key"
    r = client.post("/v1/events", json=body, headers={"Authorization": "Basic czNjcmV0"})  # not a bearer token
    assert r.status_code == 401 and _detail(r).startswith("missing API key")
    assert client.post("/v1/events", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.post("/v1/events", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_timeout_serves_backbone_order_marked_degraded_and_uncached(make_client):
    client = make_client(request_timeout_s=0.001, microbatch_max_wait_ms=50)
    req = {"user_id": "1", "k": 3, "num_candidates": 3}
    r = client.post("/v1/rank", json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is True and body["degraded_reason"].startswith("timeout")
    backbone = [it["backbone_score"] for it in body["items"]]
    assert len(backbone) == 3 and backbone == sorted(backbone, reverse=True)
    assert body["llm_calls"] == 0
    assert client.post("/v1/rank", json=req).json()["cached"] is False  # degraded answers are not cached
    metrics = client.get("/metrics").text
    assert 'recranker_degraded_responses_total{reason="timeout"} 2.0' in metrics


def test_redis_down_still_ranks_and_readyz_reports_it(make_client):
    client = make_client(redis_url=CLOSED_PORT_URL)
    r = client.post("/v1/rank", json={"user_id": "1", "k": 2, "modes": ["pointwise"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is False and len(body["items"]) == 2
    assert body["warnings"] and "user store unavailable" in body["warnings"][0]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    store = ready.json()["components"]["store"]
    assert store["ok"] is False and "redis unavailable" in store["detail"]
    assert ready.json()["components"]["model"]["ok"] is True
    r = client.post("/v1/events", json={"user_id": "1", "events": [{"item_id": "50", "rating": 5}]})
    assert r.status_code == 503 and _detail(r).startswith("user store unavailable") and "Retry-After" in r.headers
    metrics = client.get("/metrics").text
    assert 'recranker_store_errors_total{op="get"} 1.0' in metrics
    assert 'recranker_store_errors_total{op="append"} 1.0' in metrics


def test_full_queue_answers_503_with_retry_after(make_client):
    client = make_client(queue_max=1, microbatch=False)
    app = client.app

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            reqs = [ac.post("/v1/rank", json={"user_id": str(u), "k": 1, "num_candidates": 2, "modes": ["pointwise"]})
                    for u in range(10, 15)]
            return await asyncio.gather(*reqs)

    responses = client.portal.call(burst)  # run on the app's own event loop
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    full = next(r for r in responses if r.status_code == 503)
    assert "queue is full" in _detail(full) and int(full.headers["Retry-After"]) >= 1
    assert "recranker_rejected_requests_total" in client.get("/metrics").text


@pytest.mark.parametrize("path", ["/v1/rank", "/v1/rank/batch", "/v1/events"])
def test_empty_body_is_422(client, path):
    r = client.post(path, content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "request body is missing" in _detail(r)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_empty_body_is_400_on_cohere_routes(client, path):
    r = client.post(path, content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "request body is missing" in _message(r)
