"""The hostile inputs of issue 10, each answered with a 4xx a client can read and act on,
over a real socket (uvicorn on loopback): non-finite and overflowing numbers, all-zero
weights, over-limit bodies sent whole before reading (Python's http.client does that),
non-JSON content types, over-long strings, slow bodies. The engine is the fake one: none
of this needs the model. Redis is the real one.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from service.main import create_app
from tests.service.conftest import CLOSED_PORT_URL, base_settings, new_user
from tests.service.fuzzing import check, operations
from tests.service.live import LiveServer

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(fake_stack, redis_prefix, shared_data_dir, tmp_path_factory) -> Iterator[LiveServer]:
    settings = base_settings(tmp_path_factory.mktemp("hostile"), shared_data_dir, max_body_bytes=LIMIT,
                             body_timeout_s=1.0, max_candidates=20, user_history_max=50)
    app = create_app(settings, resources=fake_stack.resources(), key_prefix=redis_prefix + "hostile:")
    with LiveServer(app) as srv:
        yield srv


def _conn(srv: LiveServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes | str,
          content_type: str | None = "application/json") -> tuple[int, dict, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request("POST", path, body=body.encode() if isinstance(body, str) else body, headers=headers)
    r = conn.getresponse()
    return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.getheaders()}


def _healthy(conn: http.client.HTTPConnection) -> bool:
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    return r.status == 200 and json.loads(r.read()) == {"status": "ok"}


@pytest.mark.parametrize("weights, field", [
    ('{"pointwise": Infinity}', "weights.pointwise"),
    ('{"pairwise": -Infinity}', "weights.pairwise"),
    ('{"listwise": NaN}', "weights.listwise"),
    ('{"backbone": 1e999}', "weights.backbone"),
    ('{"pointwise": 1.7e308, "pairwise": 1.7e308, "listwise": 1.7e308, "backbone": 1.7e308}', "weights.pointwise"),
    ('{"pointwise": 0, "pairwise": 0, "listwise": 0, "backbone": 0}', "weights"),
])
def test_bad_weights_are_422_naming_the_field_and_the_connection_stays_usable(server, weights, field):
    conn = _conn(server)
    status, body, headers = _post(conn, "/v1/rank", f'{{"user_id": "1", "k": 3, "weights": {weights}}}')
    assert status == 422 and body["detail"].startswith(f"{field}: "), body
    assert headers.get("connection", "").lower() != "close"
    assert _healthy(conn)  # the same keep-alive connection still answers
    status, body, _ = _post(conn, "/v1/rank/batch", f'{{"requests": [{{"user_id": "1", "weights": {weights}}}]}}')
    assert status == 422 and body["detail"].startswith(f"requests[0].{field}: "), body
    conn.close()


def test_weights_that_only_zero_the_requested_modes_are_422(server):
    r = httpx.post(server.url + "/v1/rank", json={"user_id": "1", "modes": ["pointwise"],
                                                  "weights": {"pointwise": 0, "backbone": 0}})
    assert r.status_code == 422 and r.json()["detail"].startswith("weights: the requested modes ['pointwise']")


def test_the_largest_weights_still_give_finite_scores(server):
    op = {o.name: o for o in operations(server.server.config.app.openapi())}["POST /v1/rank"]
    big = 1e6
    r = httpx.post(server.url + "/v1/rank", json={"user_id": "1", "k": 20, "num_candidates": 20,
                                                  "weights": dict.fromkeys(("pointwise", "pairwise", "listwise", "backbone"), big)})
    assert r.status_code == 200, r.text
    from tests.service.fuzzing import Case
    assert check(Case(op, "plain", None), r) == []  # schema-valid, every number finite
    assert all(abs(it["score"]) > 0 for it in r.json()["items"][:1])


def test_non_finite_scores_never_reach_a_response(fake_stack, redis_prefix, shared_data_dir, tmp_path):
    """The modes already refuse NaN log-probabilities; this is the last guard, in the
    response path, for whatever else could produce inf/NaN (a ranker bug, an overflow)."""
    res = fake_stack.resources()
    rank_many = res.ranker.rank_many

    def overflowing(requests):
        results = rank_many(requests)
        for r in results:
            r.items = [dataclasses.replace(it, score=float("inf"), mode_scores={"pointwise": float("nan")})
                       for it in r.items]
        return results

    res.ranker.rank_many = overflowing
    app = create_app(base_settings(tmp_path, shared_data_dir), resources=res, key_prefix=redis_prefix + "nan:")
    with LiveServer(app) as srv:
        r = httpx.post(srv.url + "/v1/rank", json={"user_id": "1", "k": 3, "num_candidates": 3})
        assert r.status_code == 200, r.text
        body = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"non-finite {c} in a response"))
        assert body["degraded"] is True and "non-finite" in body["degraded_reason"]
        assert all(isinstance(it["score"], float) for it in body["items"])
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'recranker_degraded_responses_total{reason="non_finite"} 1.0' in metrics


def test_over_long_strings_say_characters_and_lists_say_items(server):
    r = httpx.post(server.url + "/v1/rank", json={"user_id": "u" * 10_000})
    assert r.status_code == 422 and r.json()["detail"] == "user_id: String should have at most 128 characters"
    r = httpx.post(server.url + "/v1/rank", json={"user_id": "1", "history": [{"item_id": "50"}] * 1001})
    assert r.status_code == 422 and r.json()["detail"].startswith("history: List should have at most 1000 items")
    r = httpx.post(server.url + "/v1/events", json={"user_id": "1", "events": [{"item_id": "50", "timestamp": 10 ** 20}]})
    assert r.status_code == 422 and r.json()["detail"].startswith("events[0].timestamp: ")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_non_json_content_types_are_415_naming_the_expected_type(server, content_type):
    conn = _conn(server)
    status, body, _ = _post(conn, "/v1/rank", '{"user_id": "1"}', content_type)
    assert status == 415
    assert content_type.split(";")[0] in body["detail"] and "application/json" in body["detail"]
    assert _healthy(conn)
    conn.close()


def test_json_content_types_and_no_content_type_are_parsed(server):
    for ctype in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json", None):
        conn = _conn(server)
        status, body, _ = _post(conn, "/v1/rank", '{"user_id": "1", "k": 2, "num_candidates": 3}', ctype)
        assert status == 200, (ctype, body)
        conn.close()


@pytest.mark.parametrize("path, body", [
    ("/v1/rank", json.dumps({"user_id": "1", "history": [{"item_id": "50", "title": "x" * 300}] * 1000})),
    ("/v1/events", json.dumps({"user_id": "1", "events": [{"item_id": "1"}] * 1_000_000})),  # ~16 MB
])
def test_over_limit_bodies_sent_whole_get_a_readable_413(server, path, body):
    """http.client sends the whole body before reading: it must read the 413, not a reset,
    and the connection must still serve the next request."""
    assert len(body) > LIMIT
    conn = _conn(server)
    status, answer, _ = _post(conn, path, body)
    assert status == 413 and f"the limit is {LIMIT} bytes" in answer["detail"]
    assert _healthy(conn)
    conn.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except ConnectionResetError:
        return b""


def _raw(srv: LiveServer, head: bytes, parts: list[bytes], pause_s: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(head)
        try:
            for p in parts:
                s.sendall(p)
                time.sleep(pause_s)
        except OSError:  # the server answered and closed before we were done: read what it said
            pass
        out = b""
        while chunk := _recv(s):  # until the whole answer (Content-Length) is in, or the server closes
            out += chunk
            head_end = out.find(b"\r\n\r\n")
            if head_end >= 0:
                length = [int(line.split(b":")[1]) for line in out[:head_end].lower().split(b"\r\n")
                          if line.startswith(b"content-length:")]
                if length and len(out) >= head_end + 4 + length[0]:
                    break
        return out


def test_chunked_upload_over_the_limit_gets_a_readable_413(server):
    body = json.dumps({"user_id": "1", "history": [{"item_id": "50", "title": "y" * 300}] * 500}).encode()
    chunks = [b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192]) for i in range(0, len(body), 8192)]
    head = (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    answer = _raw(server, head, chunks + [b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 413 ") and b"the limit is" in answer


def test_a_body_too_big_to_drain_is_refused_with_connection_close(server):
    head = (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n")
    answer = _raw(server, head, [])
    assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower()


def test_slow_body_is_408_and_others_are_served_meanwhile(server):
    body = b'{"user_id": "1", "k": 2, "num_candidates": 3}'
    head = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    import threading
    answers: list[bytes] = []
    slow = threading.Thread(target=lambda: answers.append(_raw(server, head, [body[i:i + 1] for i in range(len(body))],
                                                              pause_s=0.1)))
    slow.start()
    time.sleep(0.2)
    assert httpx.get(server.url + "/healthz").status_code == 200  # the slow client holds no one up
    slow.join(timeout=30)
    assert answers and answers[0].startswith(b"HTTP/1.1 408 ") and b"not received within 1s" in answers[0]


def test_cache_errors_are_counted_while_redis_is_down(fake_stack, redis_prefix, shared_data_dir, tmp_path):
    app = create_app(base_settings(tmp_path, shared_data_dir, redis_url=CLOSED_PORT_URL),
                     resources=fake_stack.resources(), key_prefix=redis_prefix + "down:")
    with LiveServer(app) as srv:
        for _ in range(3):
            assert httpx.post(srv.url + "/v1/rank", json={"user_id": "1", "k": 2}).status_code == 200
        r = httpx.post(srv.url + "/v1/events", json={"user_id": new_user(), "events": [{"item_id": "50"}]})
        assert r.status_code == 503 and "Retry-After" in r.headers
        # a user outside the dataset may have events in the unreadable store: not a 404
        user = new_user()
        r = httpx.post(srv.url + "/v1/rank", json={"user_id": user})
        assert r.status_code == 503 and "Retry-After" in r.headers and f"cannot read the events of user '{user}'" in r.text
        assert httpx.get(srv.url + "/readyz").status_code == 503
        metrics = httpx.get(srv.url + "/metrics").text
    assert 'recranker_cache_requests_total{result="error"} 4.0' in metrics
    assert 'recranker_store_errors_total{op="get"} 4.0' in metrics
    assert 'recranker_store_errors_total{op="append"} 1.0' in metrics
    assert 'recranker_store_errors_total{op="ping"} 1.0' in metrics


@pytest.mark.parametrize("body, detail", [
    ('{"user_id": "1", "": 1}', '[""]: unknown field'),
    ('{"user_id": "1", "Weights": {}}', "Weights: unknown field"),
    ('{"user_id": "1", "user id": 1}', '["user id"]: unknown field'),
    ('{"user_id": ' + "[" * 5000 + "]" * 5000 + "}", "request body is nested too deeply to parse"),
    (b'{"user_id": "\xff"}', "request body is not valid UTF-8"),
])
def test_odd_field_names_and_unparsable_bodies_are_named(server, body, detail):
    r = httpx.post(server.url + "/v1/rank", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith(detail), r.text


def test_a_catalogue_adapter_refuses_more_candidates_than_it_has_letters(fake_stack, redis_prefix, shared_data_dir,
                                                                        tmp_path):
    from fastapi.testclient import TestClient

    from ranker.ranker import RankerConfig

    cfg = RankerConfig(pairwise_budget=2, listwise_shuffles=2, history_token_budget=64, prompt_layout="catalogue")
    app = create_app(base_settings(tmp_path, shared_data_dir, max_candidates=30), resources=fake_stack.resources(
        config=cfg), key_prefix=redis_prefix + "catalogue:")
    with TestClient(app) as client:
        r = client.post("/v1/rank", json={"user_id": "1", "k": 3, "num_candidates": 21})
        assert r.status_code == 422, r.text
        assert "num_candidates: the served adapter's catalogue prompt layout ranks at most 20" in r.text
        ok = client.post("/v1/rank", json={"user_id": "1", "k": 3, "num_candidates": 20})
        assert ok.status_code == 200 and not ok.json()["degraded"] and ok.json()["llm_tokens"] > 0, ok.text
        docs = [str(i) for i in range(1, 22)]  # 21 catalog items
        cohere = client.post("/v2/rerank", json={"model": "recranker", "query": "1", "documents": docs})
        assert cohere.status_code == 400 and "ranks at most 20 candidates" in cohere.json()["message"], cohere.text
        tei = client.post("/rerank", json={"query": "1", "texts": docs})
        assert tei.status_code == 422 and "ranks at most 20 candidates" in tei.json()["error"], tei.text
