"""Load benchmark of POST /v1/rank: N concurrent clients for T seconds, micro-batching on
and off side by side.

By default it starts two service processes on 127.0.0.1 (free ports), one with
RECRANKER_MICROBATCH=true and one with false, both with the response cache off
(RECRANKER_CACHE_TTL_S=0) so every request reaches the engine, and the in-process user
store; it measures them in alternating rounds (on, off, on, off, ...) so that other load on
the machine affects both alike, then stops them. With --url it measures an already running
service instead. Each round stops issuing requests after --duration seconds or
--max-requests requests, whichever comes first, and waits for those in flight.

Prints p50/p95/p99 latency, throughput, errors and degraded answers per run, and writes
bench/out/load.json.

    python -m bench.bench_load                        # 8 clients, 60 s per run
    python -m bench.bench_load --clients 8 --duration 60 --rounds 2 --threads 1
    python -m bench.bench_load --url http://127.0.0.1:8080 --api-key ...
    python -m bench.bench_load --url microbatch_on=http://127.0.0.1:8081 --url microbatch_off=http://127.0.0.1:8082
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
N_USERS = 943  # ML-100K user ids are "1".."943"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(name: str, env_overrides: dict[str, str], startup_timeout_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **env_overrides, "RECRANKER_HOST": "127.0.0.1", "RECRANKER_PORT": str(port)}
    OUT.mkdir(parents=True, exist_ok=True)
    log = open(OUT / f"server-{name}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service {name} exited with {proc.returncode} during start-up; see {log.name}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_service(proc)
    raise RuntimeError(f"service {name} not ready within {startup_timeout_s:g}s; see {log.name}")


def stop_service(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def payload(client: int, i: int, args) -> dict:
    # every request a different user: distinct histories, as in production traffic
    user = 1 + (client * 131 + i * 17) % N_USERS
    return {"user_id": str(user), "k": args.k, "num_candidates": args.num_candidates, "modes": args.modes}


async def run_load(url: str, args) -> tuple[list[dict], float, tuple[float, float]]:
    """(records, measured wall seconds, (requests, batches) the engine ran while measuring)."""
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients + 2, max_keepalive_connections=args.clients + 2)
    records: list[dict] = []
    issued = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=args.client_timeout) as http:
        # warm-up (not measured): first calls pay for lazy initialisation in torch
        for c in range(args.warmup):
            (await http.post("/v1/rank", json=payload(c, 10_000, args))).raise_for_status()
        before = _batch_counts((await http.get("/metrics")).text)
        start = time.perf_counter()
        deadline = start + args.duration

        async def client(c: int) -> None:
            nonlocal issued
            i = 0
            while time.perf_counter() < deadline and issued < args.max_requests:
                issued += 1
                t = time.perf_counter()
                try:
                    r = await http.post("/v1/rank", json=payload(c, i, args))
                    rec = {"latency_s": time.perf_counter() - t, "status": r.status_code}
                    if r.status_code == 200:
                        body = r.json()
                        rec.update(degraded=body["degraded"], tokens=body["llm_tokens"])
                except httpx.HTTPError as e:
                    rec = {"latency_s": time.perf_counter() - t, "status": None, "error": type(e).__name__}
                records.append(rec)
                i += 1

        await asyncio.gather(*(client(c) for c in range(args.clients)))
        wall = time.perf_counter() - start
        after = _batch_counts((await http.get("/metrics")).text)
    return records, wall, (after[0] - before[0], after[1] - before[1])


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)  # linear interpolation between closest ranks
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _batch_counts(metrics_text: str) -> tuple[float, float]:
    return (_metric_sum(metrics_text, "recranker_batch_size_sum"), _metric_sum(metrics_text, "recranker_batch_size_count"))


def summarize(records: list[dict], wall_s: float, batch_counts: tuple[float, float]) -> dict:
    ok = [r for r in records if r["status"] == 200]
    lat = sorted(r["latency_s"] for r in ok)
    batched, batches = batch_counts
    return {
        "requests": len(records),
        "ok": len(ok),
        "errors": len(records) - len(ok),
        "error_statuses": sorted({str(r["status"]) for r in records if r["status"] != 200}),
        "degraded": sum(1 for r in ok if r.get("degraded")),
        "wall_s": round(wall_s, 2),
        "throughput_rps": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
        "latency_s": {name: (round(v, 3) if v is not None else None) for name, v in (
            ("p50", _quantile(lat, 0.50)), ("p95", _quantile(lat, 0.95)), ("p99", _quantile(lat, 0.99)),
            ("mean", statistics.fmean(lat) if lat else None))},
        "llm_tokens_per_s": round(sum(r.get("tokens", 0) for r in ok) / wall_s, 1) if wall_s > 0 else None,
        "mean_engine_batch": round(batched / batches, 2) if batches else None,
    }


def server_env(args, microbatch: bool) -> dict[str, str]:
    env = {
        "RECRANKER_MICROBATCH": "true" if microbatch else "false",
        "RECRANKER_CACHE_TTL_S": "0",  # every request must reach the engine
        "RECRANKER_REDIS_URL": "",  # in-process store: measure the ranker, not Redis
        "RECRANKER_BACKBONE": args.backbone,
        "RECRANKER_ADAPTER": args.adapter,
        "RECRANKER_PAIRWISE_BUDGET": str(args.pairwise_budget),
        "RECRANKER_LISTWISE_SHUFFLES": str(args.listwise_shuffles),
        "RECRANKER_MICROBATCH_MAX_REQUESTS": str(args.max_batch),
        "RECRANKER_MICROBATCH_MAX_WAIT_MS": str(args.max_wait_ms),
        "RECRANKER_QUEUE_MAX": str(max(64, 4 * args.clients)),
        "RECRANKER_REQUEST_TIMEOUT_S": str(args.request_timeout),  # measure latency, not fallbacks
        "RECRANKER_API_KEY": "",
    }
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def print_table(results: dict[str, dict]) -> None:
    print(f"{'run':<16}{'ok':>6}{'err':>5}{'degr':>6}{'req/s':>9}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}"
          f"{'tok/s':>9}{'batch':>7}")
    for name, r in results.items():
        lat = r["latency_s"]
        fmt = lambda v: f"{v:>8.2f}" if v is not None else f"{'-':>8}"  # noqa: E731
        print(f"{name:<16}{r['ok']:>6}{r['errors']:>5}{r['degraded']:>6}{r['throughput_rps'] or 0:>9.3f}"
              f"{fmt(lat['p50'])}{fmt(lat['p95'])}{fmt(lat['p99'])}{r['llm_tokens_per_s'] or 0:>9.0f}"
              f"{r['mean_engine_batch'] or 0:>7.2f}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", action="append",
                   help="measure a running service instead of starting two; NAME=URL or URL, repeatable")
    p.add_argument("--api-key", default=os.environ.get("RECRANKER_API_KEY") or None)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per round and setting")
    p.add_argument("--rounds", type=int, default=1, help="alternating on/off measurement rounds")
    p.add_argument("--max-requests", type=int, default=2000, help="hard cap per round")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured requests before each run")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--num-candidates", type=int, default=10)
    p.add_argument("--modes", nargs="+", default=["pointwise", "pairwise", "listwise"])
    p.add_argument("--backbone", default="pop", help="served backbone for started services (pop: no training)")
    p.add_argument("--adapter", default="none", help="adapter folder for started services, or none")
    p.add_argument("--pairwise-budget", type=int, default=5)
    p.add_argument("--listwise-shuffles", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=8, help="RECRANKER_MICROBATCH_MAX_REQUESTS")
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for started services (0: default)")
    p.add_argument("--request-timeout", type=float, default=600.0)
    p.add_argument("--client-timeout", type=float, default=900.0)
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=OUT / "load.json")
    args = p.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.max_requests < 1 or args.rounds < 1:
        p.error("--clients, --duration, --rounds and --max-requests must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    urls: dict[str, str] = {}
    procs: list[subprocess.Popen] = []
    try:
        if args.url:
            for n, spec in enumerate(args.url):
                name, _, url = spec.rpartition("=") if "=" in spec else (f"target{n or ''}", "", spec)
                urls[name] = url.rstrip("/")
        else:
            for name, microbatch in (("microbatch_on", True), ("microbatch_off", False)):
                proc, urls[name] = start_service(name, server_env(args, microbatch), args.startup_timeout)
                procs.append(proc)
        runs = {name: ([], 0.0, (0.0, 0.0)) for name in urls}
        # both services stay up and are measured in alternating rounds, so a change in the
        # machine's other load hits both settings alike
        for r in range(args.rounds):
            for name, url in urls.items():
                print(f"round {r + 1}/{args.rounds} {name}: {args.clients} clients for {args.duration:g}s", flush=True)
                recs, wall, (batched, batches) = asyncio.run(run_load(url, args))
                prev = runs[name]
                runs[name] = (prev[0] + recs, prev[1] + wall, (prev[2][0] + batched, prev[2][1] + batches))
    finally:
        for proc in procs:
            stop_service(proc)
    results = {name: summarize(*run) for name, run in runs.items()}
    print_table(results)
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "results": results,
    }
    if {"microbatch_on", "microbatch_off"} <= set(results):
        on, off = results["microbatch_on"]["throughput_rps"], results["microbatch_off"]["throughput_rps"]
        report["throughput_ratio_on_over_off"] = round(on / off, 3) if on and off else None
        print(f"throughput ratio (microbatch on / off): {report['throughput_ratio_on_over_off']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
