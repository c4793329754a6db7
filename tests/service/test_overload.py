"""Overload behaviour of the real service (issue 14): a request that times out or whose
client disconnects stops its engine work before the next forward pass, and work that could
not finish within the timeout is refused (503) before it starts.

The real model runs; its prefill pass is slowed by a hook so that the timeout or the
disconnect lands while that pass runs, and the packed-row passes that would follow are
recorded (there must be none).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from service.main import create_app
from tests.service.conftest import base_settings


class SlowPrefill:
    """Makes each prefill pass take ``delay_s`` longer and records every later pass."""

    def __init__(self, engine, monkeypatch: pytest.MonkeyPatch, delay_s: float) -> None:
        self.prefills = 0
        self.row_passes = 0
        prefill, rows = engine._prefill, engine._score_rows

        def slow_prefill(prefixes, stems):
            out = prefill(prefixes, stems)
            time.sleep(delay_s)
            self.prefills += 1
            return out

        def counted_rows(*args):
            self.row_passes += 1
            return rows(*args)

        monkeypatch.setattr(engine, "_prefill", slow_prefill)
        monkeypatch.setattr(engine, "_score_rows", counted_rows)


def _wait_idle(metrics, limit_s: float = 10.0) -> float:
    t = time.perf_counter()
    while metrics.engine_busy._value.get() != 0 and time.perf_counter() - t < limit_s:
        time.sleep(0.01)
    return time.perf_counter() - t


REQ = {"k": 2, "num_candidates": 3}


def test_a_timed_out_request_stops_its_engine_work(make_client, resources, monkeypatch):
    client = make_client(request_timeout_s=0.3, cache_ttl_s=0)
    hook = SlowPrefill(resources.engine, monkeypatch, delay_s=1.5)
    r = client.post("/v1/rank", json={"user_id": "21", **REQ})
    answered = time.perf_counter()
    body = r.json()
    assert r.status_code == 200 and body["degraded"] and body["degraded_reason"].startswith("timeout")
    metrics = client.app.state.metrics
    idle_after = _wait_idle(metrics)
    assert hook.prefills == 1 and hook.row_passes == 0  # the packs after the prefill never ran
    assert idle_after < 1.5 + 1.0, idle_after  # the rest of the pass in flight, no more
    assert metrics.abandoned.labels("running")._value.get() == 1
    assert time.perf_counter() - answered < 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_client_that_disconnects_stops_its_engine_work(resources, redis_prefix, tmp_path, shared_data_dir,
                                                          monkeypatch):
    """A real uvicorn on a loopback port; the client sends a request and closes its socket."""
    settings = base_settings(tmp_path, shared_data_dir, cache_ttl_s=0, request_timeout_s=120.0)
    app = create_app(settings, resources=resources, key_prefix=redis_prefix)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        hook = SlowPrefill(resources.engine, monkeypatch, delay_s=1.5)
        metrics = app.state.metrics
        body = json.dumps({"user_id": "22", **REQ}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            t = time.perf_counter()
            while metrics.engine_busy._value.get() != 1 and time.perf_counter() - t < 10:
                time.sleep(0.01)
            assert metrics.engine_busy._value.get() == 1  # the prefill is running
        gone = time.perf_counter()  # socket closed
        idle_after = _wait_idle(metrics)
        assert metrics.disconnects._value.get() == 1
        assert hook.prefills == 1 and hook.row_passes == 0
        assert idle_after < 1.5 + 1.0, idle_after
        assert metrics.abandoned.labels("running")._value.get() == 1
        assert time.perf_counter() - gone < 5
        # the service still answers others
        r = httpx.post(f"http://127.0.0.1:{port}/v1/rank", json={"user_id": "23", **REQ}, timeout=60)
        assert r.status_code == 200 and not r.json()["degraded"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_work_that_could_not_finish_in_time_is_refused_before_it_starts(make_client, resources, monkeypatch):
    client = make_client(request_timeout_s=20.0, cache_ttl_s=0)
    app = client.app
    batcher = app.state.live.batcher
    SlowPrefill(resources.engine, monkeypatch, delay_s=1.0)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as ac:
            first = asyncio.ensure_future(ac.post("/v1/rank", json={"user_id": "24", **REQ}))
            while batcher.metrics.engine_busy._value.get() != 1:
                await asyncio.sleep(0.01)
            batcher.cost_per_s = 10.0  # as if the engine had measured 10 tokens/s: minutes of work ahead
            second = await ac.post("/v1/rank", json={"user_id": "25", **REQ})
            return await first, second

    first, second = client.portal.call(scenario)
    assert first.status_code == 200 and not first.json()["degraded"]
    assert second.status_code == 503, second.text
    assert "overloaded" in second.json()["detail"] and int(second.headers["Retry-After"]) >= 1
    assert 'recranker_rejected_requests_total{reason="overloaded"} 1.0' in client.get("/metrics").text
