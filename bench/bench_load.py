"""Load benchmark of POST /v1/rank against a running service, at the service's settings.

By default it starts one service process on 127.0.0.1 (a free port) with the service's
own settings (stack.settings.Settings defaults and the RECRANKER_* environment), changing
only: the response cache off (RECRANKER_CACHE_TTL_S=0) and the in-process user store.
Every request is a different ML-100K user (ids taken in turn across all clients and runs,
so neither the response cache nor the prefix cache is hit until the 943 users run out;
the output says if they did).

Normal mode: for each client count (default 1, 8, 16), the clients send requests back to
back for --duration seconds (after a 503 a client waits Retry-After, at most 1 s), then
wait for their last answers. Printed per run:
throughput, p50/p95/p99 latency, errors, degraded answers, 503 refusals.

Overload mode (--overload): a small queue and a short timeout (default 4 and 10 s), 16
clients for --duration seconds; then the clients STOP: they close their connections with
requests still in flight. /metrics is polled (recranker_engine_busy, recranker_queue_depth)
until the engine is idle, and it prints "engine idle N s after clients stopped".

Writes bench/out/load.json (or --out).

    python -m bench.bench_load                              # 1, 8, 16 clients, 60 s each
    python -m bench.bench_load --overload                   # queue 4, timeout 10 s, 16 clients, 30 s
    python -m bench.bench_load --clients 8 --duration 30 --backbone pop
    python -m bench.bench_load --url http://127.0.0.1:8080 --api-key ...   # a running service
    python -m bench.bench_load --compare-microbatch --clients 8             # micro-batching on vs off
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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

from bench.report import machine, write_report
from stack.settings import Settings

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
N_USERS = 943  # ML-100K user ids are "1".."943"
WARMUP_USERS = ("943", "942", "941")  # the warm-up's users: the measured ones start at "1"


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


class Users:
    """ML-100K user ids in turn, shared by every client and run of one service."""

    def __init__(self) -> None:
        self._next = itertools.count()
        self.wrapped = False

    def __call__(self) -> str:
        n = next(self._next)
        self.wrapped = self.wrapped or n >= N_USERS - len(WARMUP_USERS)
        return str(1 + n % (N_USERS - len(WARMUP_USERS)))


# Explicit weights (the ranker's defaults): all three modes run even where the shipped
# weights serve the backbone alone, so the LLM stage is what is measured.
ALL_MODE_WEIGHTS = {"pointwise": 1 / 3, "pairwise": 1 / 3, "listwise": 1 / 3, "backbone": 0.3}


def payload(user: str, args) -> dict:
    body = {"user_id": user, "weights": ALL_MODE_WEIGHTS}
    if args.num_candidates is not None:
        body["num_candidates"] = args.num_candidates
    return body


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _batch_counts(metrics_text: str) -> tuple[float, float]:
    return (_metric_sum(metrics_text, "recranker_batch_size_sum"), _metric_sum(metrics_text, "recranker_batch_size_count"))


async def wait_idle(http: httpx.AsyncClient, since: float, limit_s: float) -> float | None:
    """Seconds from ``since`` until /metrics first shows no batch running and nothing queued
    (None: not within limit_s)."""
    while time.perf_counter() - since < limit_s:
        text = (await http.get("/metrics")).text
        if _metric_sum(text, "recranker_engine_busy") == 0 and _metric_sum(text, "recranker_queue_depth") == 0:
            return time.perf_counter() - since
        await asyncio.sleep(0.05)
    return None


async def run_load(url: str, args, clients: int, users: Users, stop_abruptly: bool) -> dict:
    """One run: records, measured wall seconds, engine batches, and the idle time after the stop."""
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    records: list[dict] = []
    issued = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=args.client_timeout) as http:
        for u in WARMUP_USERS[: args.warmup]:  # not measured: first calls pay for lazy initialisation
            (await http.post("/v1/rank", json=payload(u, args))).raise_for_status()
        before = _batch_counts((await http.get("/metrics")).text)
        start = time.perf_counter()
        deadline = start + args.duration

        async def client() -> None:
            nonlocal issued
            while time.perf_counter() < deadline and issued < args.max_requests:
                issued += 1
                t = time.perf_counter()
                try:
                    r = await http.post("/v1/rank", json=payload(users(), args))
                    rec = {"latency_s": time.perf_counter() - t, "status": r.status_code}
                    if r.status_code == 200:
                        body = r.json()
                        rec.update(degraded=body["degraded"], tokens=body["llm_tokens"])
                    elif r.status_code == 503:  # refused: back off as told (at most 1 s), as a client would
                        records.append(rec)
                        await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", 1)),
                                                max(0.0, deadline - time.perf_counter())))
                        continue
                except httpx.HTTPError as e:
                    rec = {"latency_s": time.perf_counter() - t, "status": None, "error": type(e).__name__}
                except asyncio.CancelledError:  # stopped with this request in flight
                    records.append({"latency_s": time.perf_counter() - t, "status": "abandoned"})
                    raise
                records.append(rec)

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        if stop_abruptly:
            await asyncio.wait(tasks, timeout=args.duration)
            for task in tasks:  # cancelling closes each in-flight request's connection
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        else:
            await asyncio.gather(*tasks)
        stopped = time.perf_counter()
        idle_after = await wait_idle(http, stopped, args.idle_timeout)
        after = _batch_counts((await http.get("/metrics")).text)
    return {"records": records, "wall_s": stopped - start,
            "batches": (after[0] - before[0], after[1] - before[1]), "idle_after_stop_s": idle_after}


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)  # linear interpolation between closest ranks
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(run: dict) -> dict:
    records, wall_s = run["records"], run["wall_s"]
    ok = [r for r in records if r["status"] == 200]
    lat = sorted(r["latency_s"] for r in ok)
    batched, batches = run["batches"]
    refused = [r for r in records if r["status"] == 503]
    abandoned = [r for r in records if r["status"] == "abandoned"]
    errors = [r for r in records if r["status"] not in (200, 503, "abandoned")]
    return {
        "requests": len(records),
        "ok": len(ok),
        "errors": len(errors),
        "error_statuses": sorted({str(r["status"]) for r in errors}),
        "refused_503": len(refused),
        "abandoned_at_stop": len(abandoned),
        "degraded": sum(1 for r in ok if r.get("degraded")),
        "llm_ranked": sum(1 for r in ok if not r.get("degraded")),
        "wall_s": round(wall_s, 2),
        "throughput_rps": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
        "llm_ranked_rps": round(sum(1 for r in ok if not r.get("degraded")) / wall_s, 3) if wall_s > 0 else None,
        "latency_s": {name: (round(v, 3) if v is not None else None) for name, v in (
            ("p50", _quantile(lat, 0.50)), ("p95", _quantile(lat, 0.95)), ("p99", _quantile(lat, 0.99)),
            ("mean", statistics.fmean(lat) if lat else None))},
        "llm_tokens_per_s": round(sum(r.get("tokens", 0) for r in ok) / wall_s, 1) if wall_s > 0 else None,
        "mean_engine_batch": round(batched / batches, 2) if batches else None,
        "engine_idle_after_stop_s": None if run["idle_after_stop_s"] is None else round(run["idle_after_stop_s"], 2),
    }


def server_env(args, overrides: dict[str, str]) -> dict[str, str]:
    """The service's own settings; only what the benchmark needs is set (and what was asked)."""
    env = {
        "RECRANKER_CACHE_TTL_S": "0",  # every request must reach the engine
        "RECRANKER_REDIS_URL": "",  # in-process store: measure the ranker, not Redis
        "RECRANKER_API_KEY": "",
    }
    for flag, name in (("backbone", "BACKBONE"), ("adapter", "ADAPTER"), ("queue_max", "QUEUE_MAX"),
                       ("request_timeout", "REQUEST_TIMEOUT_S"), ("max_batch", "MICROBATCH_MAX_REQUESTS")):
        value = getattr(args, flag)
        if value is not None:
            env[f"RECRANKER_{name}"] = str(value)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env | overrides


def print_table(results: dict[str, dict]) -> None:
    print(f"{'run':<22}{'ok':>5}{'err':>5}{'503':>5}{'degr':>6}{'req/s':>8}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}"
          f"{'tok/s':>8}{'batch':>7}{'idle s':>8}")
    for name, r in results.items():
        lat = r["latency_s"]
        fmt = lambda v, w=8: f"{v:>{w}.2f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
        print(f"{name:<22}{r['ok']:>5}{r['errors']:>5}{r['refused_503']:>5}{r['degraded']:>6}"
              f"{r['throughput_rps'] or 0:>8.3f}{fmt(lat['p50'])}{fmt(lat['p95'])}{fmt(lat['p99'])}"
              f"{r['llm_tokens_per_s'] or 0:>8.0f}{fmt(r['mean_engine_batch'], 7)}{fmt(r['engine_idle_after_stop_s'])}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", action="append", help="measure a running service instead of starting one; NAME=URL or URL")
    p.add_argument("--api-key", default=os.environ.get("RECRANKER_API_KEY") or None)
    p.add_argument("--clients", type=int, nargs="+", default=None, help="client counts (default 1 8 16; "
                   "--overload: 16)")
    p.add_argument("--duration", type=float, default=None, help="seconds per run (default 60; --overload: 30)")
    p.add_argument("--max-requests", type=int, default=5000, help="hard cap per run")
    p.add_argument("--warmup", type=int, default=2, choices=range(0, len(WARMUP_USERS) + 1),
                   help="unmeasured requests before each run")
    p.add_argument("--num-candidates", type=int, default=None, help="per request (default: the service's)")
    p.add_argument("--overload", action="store_true", help="small queue, short timeout, clients stop abruptly")
    p.add_argument("--compare-microbatch", action="store_true", help="start two services, micro-batching on "
                   "and off, measured in alternating runs")
    # None: the service's own setting (stack.settings.Settings / the RECRANKER_* environment)
    p.add_argument("--backbone", default=None, help="served backbone (pop needs no training)")
    p.add_argument("--adapter", default=None, help="adapter folder, or none")
    p.add_argument("--queue-max", type=int, default=None, help="RECRANKER_QUEUE_MAX (--overload: 4)")
    p.add_argument("--request-timeout", type=float, default=None, help="RECRANKER_REQUEST_TIMEOUT_S (--overload: 10)")
    p.add_argument("--max-batch", type=int, default=None, help="RECRANKER_MICROBATCH_MAX_REQUESTS")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for started services (0: default)")
    p.add_argument("--client-timeout", type=float, default=900.0)
    p.add_argument("--idle-timeout", type=float, default=300.0, help="longest wait for the engine to go idle")
    p.add_argument("--startup-timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, default=None, help="default bench/out/load.json (--overload: overload.json)")
    args = p.parse_args(argv)
    if args.overload:
        args.clients = args.clients or [16]
        args.duration = args.duration or 30.0
        args.queue_max = args.queue_max or 4
        args.request_timeout = args.request_timeout or 10.0
    args.clients = args.clients or [1, 8, 16]
    args.duration = args.duration or 60.0
    args.out = args.out or OUT / ("overload.json" if args.overload else "load.json")
    if min(args.clients) < 1 or args.duration <= 0 or args.max_requests < 1:
        p.error("--clients, --duration and --max-requests must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    defaults = Settings(_env_file=None)
    load_before = os.getloadavg()
    urls: dict[str, str] = {}
    procs: list[subprocess.Popen] = []
    runs: dict[str, dict] = {}
    users: dict[str, Users] = {}
    try:
        if args.url:
            for n, spec in enumerate(args.url):
                name, _, url = spec.rpartition("=") if "=" in spec else (f"target{n or ''}", "", spec)
                urls[name] = url.rstrip("/")
        else:
            variants = ({"microbatch_on": {"RECRANKER_MICROBATCH": "true"},
                         "microbatch_off": {"RECRANKER_MICROBATCH": "false"}} if args.compare_microbatch
                        else {"overload" if args.overload else "service": {}})
            for name, extra in variants.items():
                proc, urls[name] = start_service(name, server_env(args, extra), args.startup_timeout)
                procs.append(proc)
        for clients in args.clients:
            for name, url in urls.items():  # alternating: other load on the machine hits each alike
                print(f"{name}: {clients} clients for {args.duration:g}s", flush=True)
                who = users.setdefault(name, Users())
                runs[f"{name} x{clients}"] = asyncio.run(run_load(url, args, clients, who, args.overload))
    finally:
        for proc in procs:
            stop_service(proc)
    results = {name: summarize(run) for name, run in runs.items()}
    print_table(results)
    if any(u.wrapped for u in users.values()):
        print(f"note: more than {N_USERS - len(WARMUP_USERS)} requests: users repeated (prefix-cache hits possible)")
    for name, r in results.items():
        idle = r["engine_idle_after_stop_s"]
        print(f"{name}: engine idle {idle if idle is not None else f'> {args.idle_timeout:g}'} s after clients "
              f"stopped ({r['abandoned_at_stop']} requests in flight abandoned at the stop; "
              f"{r['llm_ranked']} of {r['ok']} answers LLM-ranked, {r['refused_503']} "
              f"refused with 503)")
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "api_key"},
        "service_defaults": {k: getattr(defaults, k) for k in (
            "pairwise_budget", "listwise_shuffles", "history_token_budget", "num_candidates", "microbatch",
            "microbatch_max_requests", "microbatch_max_wait_ms", "queue_max", "request_timeout_s", "dtype",
            "prefix_cache_mb", "admission", "backbone")},
        "machine": machine(python=platform.python_version(), loadavg_before=load_before,
                           loadavg_after=os.getloadavg()),
        "results": results,
    }
    write_report(args.out, report)
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
