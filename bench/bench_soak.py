"""Soak test: the real service process under a light, steady mixed load for a long time,
watching for errors and for growth of its memory and open file descriptors.

Starts ``python -m service.cli`` (uvicorn, one worker) on a free loopback port with the
REAL model (SmolLM2-135M-Instruct + the shipped adapter, CPU, one thread), the popularity
backbone, and a private redis-server (started and stopped here). Requests are kept tiny
(3 candidates, mostly pointwise) so a shared 2-core CPU sustains the rate.

One client runs a fixed cycle every --interval seconds: an event for one of 50 soak users,
a rank for a dataset user (cache misses; cache hits once users repeat), /healthz; every
5th cycle a rank for a soak user (their state changed: a miss); every 10th a rerank, a
batch of two, /readyz and /metrics; every 20th a hostile request that must be a 4xx
(errors paths leak too). An *error* is an exception, a status >= 500, a 4xx to a valid
request, a 2xx to a hostile one, or a degraded answer.

Memory (RSS) and open fds of the service process are sampled every --sample-every seconds;
growth is measured from the end of the warm-up (--warmup) to the end.

Prints the figures and writes docs/bench/soak.json.

    python -m bench.bench_soak                         # 60 s warm-up + 600 s
    python -m bench.bench_soak --duration 1800 --interval 0.5
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

from bench.bench_load import start_service, stop_service
from bench.report import machine, write_report

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "bench" / "soak.json"
N_DATASET_USERS = 943
N_ITEMS = 1682


def _hostile(n: int) -> tuple[str, bytes, str]:
    """(path, body, content type) of a request that must be refused with a 4xx."""
    return [
        ("/v1/rank", b'{"user_id": "1", "weights": {"pointwise": Infinity}}', "application/json"),
        ("/v1/rank", b'{"user_id": "1"}', "text/plain"),
        ("/v1/events", b'{"user_id": "1", "events": [{"item_id": "no-such-item"}]}', "application/json"),
        ("/v1/rank", b'{"user_id": ' + b"[" * 3000 + b"]" * 3000 + b"}", "application/json"),
        ("/v1/rerank", b'{"query": "1", "documents": []}', "application/json"),
    ][n % 5]


def sample(proc: psutil.Process, t0: float) -> dict:
    """RSS and fds of the service process and its children (uvicorn runs in the one process)."""
    procs = [proc] + proc.children(recursive=True)
    return {"t": round(time.monotonic() - t0, 1), "rss_mb": round(sum(p.memory_info().rss for p in procs) / 2**20, 1),
            "fds": sum(p.num_fds() for p in procs), "threads": sum(p.num_threads() for p in procs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds measured after the warm-up")
    ap.add_argument("--warmup", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per client cycle")
    ap.add_argument("--sample-every", type=float, default=10.0)
    ap.add_argument("--home", type=Path, default=REPO / "bench" / "out" / "soak-home",
                    help="RECRANKER_HOME of the service (the model is converted there once)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from tests.service.live import RedisServer

    rng = random.Random(0)
    samples: list[dict] = []
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    error_examples: list[str] = []
    statuses: Counter = Counter()

    with tempfile.TemporaryDirectory(prefix="recranker-soak-") as tmp, RedisServer(Path(tmp) / "redis") as redis:
        env = {"RECRANKER_HOME": str(args.home), "RECRANKER_BACKBONE": "pop", "RECRANKER_REDIS_URL": redis.url,
               "RECRANKER_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "RECRANKER_NUM_CANDIDATES": "3",
               "RECRANKER_TOP_K": "2", "RECRANKER_PAIRWISE_BUDGET": "1", "RECRANKER_LISTWISE_SHUFFLES": "1",
               "RECRANKER_HISTORY_TOKEN_BUDGET": "64", "RECRANKER_MAX_CANDIDATES": "10",
               "RECRANKER_REQUEST_TIMEOUT_S": "60"}
        t_start = time.monotonic()
        proc, url = start_service("soak", env, startup_timeout_s=900)
        startup_s = time.monotonic() - t_start
        ps = psutil.Process(proc.pid)
        print(f"service up in {startup_s:.0f}s at {url} (pid {proc.pid})", flush=True)
        try:
            with httpx.Client(base_url=url, timeout=90) as client:
                def call(name: str, method: str, path: str, *, expect_ok: bool = True, **kw) -> None:
                    t = time.perf_counter()
                    try:
                        r = client.request(method, path, **kw)
                    except httpx.HTTPError as e:
                        errors[f"{name} exception {type(e).__name__}"] += 1
                        error_examples.append(f"{name}: {type(e).__name__}: {e}"[:300])
                        return
                    latencies[name].append(time.perf_counter() - t)
                    statuses[f"{name} {r.status_code}"] += 1
                    ok = 200 <= r.status_code < 300
                    bad = (r.status_code >= 500 or ok != expect_ok
                           or (ok and name.startswith("rank") and r.json().get("degraded")))
                    if bad:
                        errors[f"{name} {r.status_code}"] += 1
                        error_examples.append(f"{name} {r.status_code}: {r.text[:200]}")

                t0 = time.monotonic()
                end = t0 + args.warmup + args.duration
                next_sample, cycle = t0, 0
                while time.monotonic() < end:
                    cycle_start = time.monotonic()
                    if cycle_start >= next_sample:
                        samples.append(sample(ps, t0))
                        next_sample += args.sample_every
                    soak_user = f"soak-user-{cycle % 50}"
                    call("events", "POST", "/v1/events", json={"user_id": soak_user, "events": [
                        {"item_id": str(rng.randint(1, N_ITEMS)), "rating": rng.choice([None, 2, 4, 5])}]})
                    call("rank", "POST", "/v1/rank", json={"user_id": str(1 + cycle % N_DATASET_USERS), "k": 2,
                                                           "num_candidates": 3, "modes": ["pointwise"]})
                    call("healthz", "GET", "/healthz")
                    if cycle % 5 == 0:
                        call("rank_events_user", "POST", "/v1/rank", json={
                            "user_id": soak_user, "k": 2, "num_candidates": 3, "modes": ["pointwise", "listwise"]})
                    if cycle % 10 == 0:
                        call("rerank", "POST", "/v1/rerank", json={
                            "query": str(1 + rng.randrange(N_DATASET_USERS)), "modes": ["pointwise"],
                            "documents": [str(rng.randint(1, N_ITEMS)) for _ in range(2)] + ["A New Film (2026)"]})
                        call("batch", "POST", "/v1/rank/batch", json={"requests": [
                            {"user_id": str(1 + rng.randrange(N_DATASET_USERS)), "k": 2, "num_candidates": 3,
                             "modes": ["pointwise"]} for _ in range(2)]})
                        call("readyz", "GET", "/readyz")
                        call("metrics", "GET", "/metrics")
                    if cycle % 20 == 0:
                        path, body, ctype = _hostile(cycle // 20)
                        call("hostile", "POST", path, expect_ok=False, content=body, headers={"content-type": ctype})
                    cycle += 1
                    time.sleep(max(0.0, args.interval - (time.monotonic() - cycle_start)))
                samples.append(sample(ps, t0))
                final_metrics = client.get("/metrics").text
        finally:
            stop_service(proc)

    warm = [s for s in samples if s["t"] >= args.warmup]
    base, last = warm[0], warm[-1]
    requests = sum(len(v) for v in latencies.values()) + sum(v for k, v in errors.items() if "exception" in k)
    figures = {
        "what": "real service process (python -m service.cli, uvicorn), real model + adapter on CPU (1 thread), "
                "pop backbone, private redis-server; one client on a fixed cycle",
        "machine": machine(memory_gib=round(psutil.virtual_memory().total / 2**30), note="shared by parallel jobs"),
        "python": sys.version.split()[0],
        "startup_seconds": round(startup_s, 1),
        "warmup_seconds": args.warmup, "measured_seconds": round(last["t"] - base["t"], 1),
        "duration_seconds": round(samples[-1]["t"], 1), "cycles": cycle, "interval_seconds": args.interval,
        "requests": requests, "requests_per_second": round(requests / max(1e-9, samples[-1]["t"]), 2),
        "errors": sum(errors.values()), "errors_by_kind": dict(errors), "error_examples": error_examples[:10],
        "statuses": dict(sorted(statuses.items())),
        "latency_ms": {k: {"n": len(v), "p50": round(1000 * statistics.median(v), 1),
                           "p95": round(1000 * sorted(v)[int(0.95 * (len(v) - 1))], 1)} for k, v in sorted(latencies.items())},
        "rss_mb": {"start": samples[0]["rss_mb"], "after_warmup": base["rss_mb"], "end": last["rss_mb"],
                   "max_after_warmup": max(s["rss_mb"] for s in warm),
                   "growth_after_warmup_pct": round(100 * (last["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 2)},
        "fds": {"start": samples[0]["fds"], "after_warmup": base["fds"], "end": last["fds"],
                "min_after_warmup": min(s["fds"] for s in warm), "max_after_warmup": max(s["fds"] for s in warm)},
        "threads": {"after_warmup": base["threads"], "end": last["threads"]},
        "service_counters": {line.split(" ")[0]: float(line.split(" ")[1]) for line in final_metrics.splitlines()
                             if line.startswith(("recranker_ranked_requests_total", "recranker_cache_requests_total",
                                                 "recranker_store_errors_total", "recranker_degraded_responses_total"))},
        "samples": samples,
    }
    write_report(args.out, figures)
    print(json.dumps({k: v for k, v in figures.items() if k != "samples"}, indent=1))
    ok = figures["errors"] == 0 and figures["rss_mb"]["growth_after_warmup_pct"] < 10
    print(f"{'PASS' if ok else 'FAIL'}: {requests} requests in {figures['duration_seconds']}s, {figures['errors']} errors, "
          f"RSS {base['rss_mb']} -> {last['rss_mb']} MB ({figures['rss_mb']['growth_after_warmup_pct']}%), "
          f"fds {base['fds']} -> {last['fds']}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
