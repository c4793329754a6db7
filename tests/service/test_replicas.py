"""Two service processes sharing one Redis behave as one service.

Two real uvicorn processes (the real app, ML-100K, a pop backbone; a fast fake engine,
see tests/service/fake_engine_app.py) share one Redis and one key prefix, as replicas
behind the compose proxy do. The Redis is a private redis-server on a free port, started
by this test, so that it can be stopped and started again to show each replica's
readiness following it (the shared Redis on 6379 must stay up for the other tests).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.service.fake_engine_app import free_port, start_service, stop, wait_until


class RedisServer:
    def __init__(self, exe: str, port: int, log: Path) -> None:
        self.exe, self.port, self.log = exe, port, log
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def ping() -> bool:
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_until(ping, 10, "redis-server up", self.proc, self.log)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture
def redis_server(tmp_path: Path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (Debian: apt-get install redis-server)")
    server = RedisServer(exe, free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def replicas(tmp_path: Path, shared_data_dir: Path, redis_server: RedisServer):
    prefix = f"recranker-replicas:{uuid.uuid4().hex[:8]}:"
    procs = []
    try:
        for name in ("a", "b"):
            proc, url = start_service(tmp_path, shared_data_dir, redis_server.url, prefix, name)
            procs.append(proc)
        yield [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in _ports(procs)]
    finally:
        for p in procs:
            stop(p)


def _ports(procs) -> list[int]:
    return [int(p.args[p.args.index("--port") + 1]) for p in procs]


def _items(answer: dict) -> list[str]:
    return [it["item_id"] for it in answer["items"]]


def _cache_hits(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('recranker_cache_requests_total{result="hit"}'):
            return float(line.split()[-1])
    raise AssertionError("no cache hit counter")


def test_two_replicas_share_events_cache_and_readiness(replicas, redis_server: RedisServer) -> None:
    a, b = replicas
    user = f"replica-user-{uuid.uuid4().hex[:8]}"
    req = {"user_id": user, "k": 3, "num_candidates": 5}

    # an event posted to A is seen by B's next rank
    assert b.post("/v1/rank", json=req).status_code == 404  # nobody knows this user yet
    r = a.post("/v1/events", json={"user_id": user, "events": [{"item_id": "50", "rating": 5},
                                                               {"item_id": "181", "rating": 4}]})
    assert r.status_code == 200, r.text
    first = b.post("/v1/rank", json=req)
    assert first.status_code == 200, first.text
    first = first.json()
    assert not first["cached"] and not first["degraded"]
    assert not {"50", "181"} & set(_items(first)), "seen items are never retrieved"

    # B's cached answer is a hit on A
    hits_before = _cache_hits(a)
    again = a.post("/v1/rank", json=req).json()
    assert again["cached"] is True and _items(again) == _items(first)
    assert _cache_hits(a) == hits_before + 1

    # an event posted to B invalidates the answer A would serve, and A sees the new item
    top = _items(first)[0]
    assert b.post("/v1/events", json={"user_id": user, "events": [{"item_id": top, "rating": 5}]}).status_code == 200
    after = a.post("/v1/rank", json=req).json()
    assert after["cached"] is False and top not in _items(after)

    # readiness of each follows the shared Redis
    for c in (a, b):
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["components"]["store"]["ok"] is True
    redis_server.stop()
    for c in (a, b):
        r = wait_until(lambda c=c: (lambda r: r if r.status_code == 503 else None)(c.get("/readyz")), 15,
                       "readyz 503 with Redis down")
        assert r.json()["components"]["store"]["ok"] is False
        assert r.json()["components"]["model"]["ok"] is True  # only the store is down
    assert a.post("/v1/events", json={"user_id": user, "events": [{"item_id": "1"}]}).status_code == 503
    redis_server.start()  # same port, empty (no persistence): the replicas reconnect by themselves
    for c in (a, b):
        wait_until(lambda c=c: c.get("/readyz").status_code == 200, 15, "readyz 200 with Redis back")
