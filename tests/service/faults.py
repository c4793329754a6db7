"""Fault injection under steady traffic: the scenario behind tests/service/test_faults.py.

The service runs under uvicorn on loopback with a Redis of its own (tests/service/live.py)
and the fake engine; two client threads send a steady stream of POST /v1/events (each
event unique: user, item, timestamp) and POST /v1/rank while the scenario injects, one
after another: Redis killed (SIGKILL) and restarted, Redis frozen (SIGSTOP, a slow Redis),
the engine raising, the engine hanging past the request timeout, clients disconnecting
mid-request, clients sending their body byte by byte.

Afterwards every event the service acknowledged (2xx) is looked up in Redis through the
service's own store code, and its effect is checked on the next rank (a stored item is
history, so it is never recommended again). Every answer that was not a 2xx must be one a
client can act on: 503 with Retry-After, or a 4xx.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

from service.store import RedisStore
from tests.service.fakes import FakeEngine
from tests.service.live import LiveServer, RedisServer


@dataclass
class Outcome:
    phase: str
    endpoint: str
    status: int  # 0: no answer (the client saw an exception)
    retry_after: bool
    degraded: bool = False
    error: str = ""
    cached: bool = False
    took_s: float = 0.0


@dataclass
class Recorder:
    phase: str = "baseline"
    outcomes: list[Outcome] = field(default_factory=list)
    acked: list[tuple[str, str, int, str]] = field(default_factory=list)  # (user, item, ts, phase)
    refused: list[tuple[str, str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    side: Counter = field(default_factory=Counter)  # phase -> side requests (disconnects, slow bodies)

    def add(self, o: Outcome) -> None:
        with self.lock:
            self.outcomes.append(o)


def _events_loop(url: str, users: list[str], items: list[str], rec: Recorder, stop: threading.Event,
                 pause_s: float, seed: int) -> None:
    rng = random.Random(seed)
    ts = 1_700_000_000 + seed * 10_000_000
    with httpx.Client(base_url=url, timeout=15) as client:
        while not stop.is_set():
            user, item, ts = rng.choice(users), rng.choice(items), ts + 1
            phase = rec.phase
            try:
                r = client.post("/v1/events", json={"user_id": user, "events": [{"item_id": item, "timestamp": ts}]})
            except httpx.HTTPError as e:
                rec.add(Outcome(phase, "events", 0, False, error=f"{type(e).__name__}: {e}"))
                rec.refused.append((user, item, ts, phase))
                continue
            rec.add(Outcome(phase, "events", r.status_code, "retry-after" in r.headers))
            (rec.acked if 200 <= r.status_code < 300 else rec.refused).append((user, item, ts, phase))
            time.sleep(pause_s)


def _rank_loop(url: str, users: list[str], rec: Recorder, stop: threading.Event, pause_s: float, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=15) as client:
        while not stop.is_set():
            phase = rec.phase
            # many distinct requests: mostly cache misses, so engine faults reach the engine
            body = {"user_id": rng.choice(users), "k": 2, "num_candidates": rng.randint(3, 8),
                    "modes": rng.choice([["pointwise"], ["pointwise", "pairwise"], ["listwise"]])}
            t = time.monotonic()
            try:
                r = client.post("/v1/rank", json=body)
            except httpx.HTTPError as e:
                rec.add(Outcome(phase, "rank", 0, False, error=f"{type(e).__name__}: {e}"))
                continue
            answer = r.json() if r.status_code == 200 else {}
            rec.add(Outcome(phase, "rank", r.status_code, "retry-after" in r.headers, answer.get("degraded", False),
                            cached=answer.get("cached", False), took_s=time.monotonic() - t,
                            error=r.text[:200] if r.status_code != 200 else ""))
            time.sleep(pause_s)


def _disconnecting_client(port: int, n: int) -> None:
    """Sends a rank request (whole, or half of its body) and hangs up without reading."""
    body = b'{"user_id": "1", "k": 2, "num_candidates": 4}'
    head = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head + (body if n % 2 else body[: len(body) // 2]))
        time.sleep(0.01 * (n % 5))


def _slow_body_client(port: int, out: list[bytes]) -> None:
    body = b'{"user_id": "1", "k": 2, "num_candidates": 4}'
    head = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            for i in range(len(body)):
                s.sendall(body[i:i + 1])
                time.sleep(0.1)
        except OSError:
            pass
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
        except OSError:
            pass
    out.append(answer)


def run_scenario(app_factory, redis: RedisServer, engine: FakeEngine, *, users: list[str], items: list[str],
                 rank_users: list[str], key_prefix: str, request_timeout_s: float, phase_s: float = 1.5,
                 pause_s: float = 0.01) -> dict:
    """Runs every fault in turn under traffic; returns the fault table and the read-back."""
    rec = Recorder()
    stop = threading.Event()
    slow_answers: list[bytes] = []
    app = app_factory(redis.url)
    with LiveServer(app) as srv:
        threads = [threading.Thread(target=_events_loop, args=(srv.url, users, items, rec, stop, pause_s, 1)),
                   threading.Thread(target=_rank_loop, args=(srv.url, rank_users, rec, stop, pause_s, 2))]
        for t in threads:
            t.start()

        def phase(name: str, seconds: float) -> None:
            rec.phase = name
            time.sleep(seconds)

        try:
            phase("baseline", phase_s)
            redis.kill()
            phase("redis killed", phase_s * 1.5)
            redis.start()
            phase("redis restarted (recovery)", phase_s * 2)
            redis.freeze()
            phase("redis frozen (SIGSTOP)", phase_s)
            redis.resume()
            phase("redis resumed (recovery)", phase_s * 2)
            engine.fail = True
            phase("engine raising", phase_s)
            engine.fail = False
            engine.hang_s = 10.0  # released below; the phase outlasts several request timeouts
            phase("engine hanging past the timeout", max(phase_s * 1.5, 3 * request_timeout_s))
            engine.hang_s = 0.0
            engine.release()
            phase("engine released (recovery)", phase_s * 2)
            rec.phase = "clients disconnecting"
            for n in range(30):
                _disconnecting_client(srv.port, n)
                rec.side[rec.phase] += 1
            time.sleep(phase_s / 2)
            rec.phase = "slow-body clients"
            slow = [threading.Thread(target=_slow_body_client, args=(srv.port, slow_answers)) for _ in range(5)]
            for t in slow:
                t.start()
                rec.side[rec.phase] += 1
            for t in slow:
                t.join(timeout=30)
            phase("after", phase_s)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            engine.hang_s, engine.fail = 0.0, False
            engine.release()
            redis.resume()
        # the next rank of each user must see every acknowledged item as history
        seen_again = []
        with httpx.Client(base_url=srv.url, timeout=15) as client:
            acked_by_user = defaultdict(set)
            for user, item, _, _ in rec.acked:
                acked_by_user[user].add(item)
            for user, acked_items in acked_by_user.items():
                r = client.post("/v1/rank", json={"user_id": user, "k": 10, "num_candidates": 10, "modes": ["pointwise"]})
                if r.status_code != 200:
                    seen_again.append(f"{user}: rank answered {r.status_code}")
                    continue
                again = acked_items & {it["item_id"] for it in r.json()["items"]}
                if again:
                    seen_again.append(f"{user}: acknowledged items {sorted(again)} recommended again")
    stored = asyncio.run(_read_back(redis.url, key_prefix, {u for u, *_ in rec.acked + rec.refused}))
    return _table(rec, stored, seen_again, slow_answers)


async def _read_back(url: str, prefix: str, users: set[str]) -> dict[str, set[tuple[str, int]]]:
    store = RedisStore.from_url(url, prefix=prefix, history_max=10_000, timeout_s=2.0)
    try:
        out = {}
        for user in users:
            state = await store.get_state(user)
            out[user] = {(e.item_id, e.timestamp) for e in state.events}
        return out
    finally:
        await store.close()


def _table(rec: Recorder, stored: dict, seen_again: list[str], slow_answers: list[bytes]) -> dict:
    phases: dict[str, dict] = {}
    for o in rec.outcomes:
        p = phases.setdefault(o.phase, {"requests": 0, "statuses": Counter(), "degraded": 0, "cached": 0,
                                        "503_without_retry_after": 0, "client_exceptions": 0,
                                        "events_acknowledged": 0, "events_refused": 0,
                                        "acknowledged_readable": 0, "refused_but_stored": 0})
        p["requests"] += 1
        p["statuses"][f"{o.endpoint} {o.status}"] += 1
        p["degraded"] += o.degraded
        p["cached"] += o.cached
        p["503_without_retry_after"] += o.status == 503 and not o.retry_after
        p["client_exceptions"] += o.status == 0
    for user, item, ts, phase in rec.acked:
        phases[phase]["events_acknowledged"] += 1
        phases[phase]["acknowledged_readable"] += (item, ts) in stored.get(user, set())
    for user, item, ts, phase in rec.refused:
        phases[phase]["events_refused"] += 1
        phases[phase]["refused_but_stored"] += (item, ts) in stored.get(user, set())
    for name, p in phases.items():
        p["statuses"] = dict(sorted(p["statuses"].items()))
        p["side_requests"] = rec.side.get(name, 0)
    lost = [(u, i, t, ph) for u, i, t, ph in rec.acked if (i, t) not in stored.get(u, set())]
    bad = [o for o in rec.outcomes if not (200 <= o.status < 300 or (o.status == 503 and o.retry_after)
                                           or 400 <= o.status < 500)]
    return {
        "phases": phases,
        "events_acknowledged": len(rec.acked),
        "events_acknowledged_readable": len(rec.acked) - len(lost),
        "events_lost": [list(x) for x in lost[:20]],
        "unactionable_answers": [f"{o.phase}: {o.endpoint} {o.status} {o.error}" for o in bad[:20]],
        "unactionable_count": len(bad),
        "acknowledged_recommended_again": seen_again[:20],
        "slow_body_answers": [a.split(b"\r\n", 1)[0].decode("latin-1") for a in slow_answers],
    }
