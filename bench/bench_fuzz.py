"""The long fuzz run: thousands of generated requests across every endpoint of the
service's OpenAPI document (the CI suite, tests/service/test_fuzz.py, runs a few hundred).

The service runs under uvicorn on a free loopback port with a private redis-server (a real
Redis, started and stopped here) and the fast deterministic fake engine from the tests:
what is fuzzed is the HTTP layer, validation, the pipeline, the store and the ensemble, not
the LLM's arithmetic. The cases and the checks are those of tests/service/fuzzing.py: no
status >= 500, every 2xx valid against the response schema with only finite numbers,
every 4xx naming the field and the rule, /healthz answering after every case.

Bounded in count (--cases) and time (--max-seconds: past it, no more requests are sent).
Prints the figures and writes docs/bench/fuzz.json.

    python -m bench.bench_fuzz                       # 5000 cases, at most 30 minutes
    python -m bench.bench_fuzz --cases 20000 --seed 7 --max-seconds 3600
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import machine, write_report

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "bench" / "fuzz.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("RECRANKER_DATA_DIR", REPO / "artifacts" / "data")),
                    help="folder holding ml-100k/ (default: RECRANKER_DATA_DIR)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from stack.settings import Settings
    from service.main import create_app
    from tests.service.fakes import FakeStack
    from tests.service.fuzzing import fuzz, operations, pools_of
    from tests.service.live import LiveServer, RedisServer

    started = time.monotonic()
    stack = FakeStack(args.data_dir / "ml-100k")
    with tempfile.TemporaryDirectory(prefix="recranker-fuzz-") as tmp, RedisServer(Path(tmp) / "redis") as redis:
        settings = Settings(_env_file=None, home=Path(tmp) / "home", data_dir=args.data_dir, backbone="pop", adapter=None,
                            redis_url=redis.url, max_candidates=30, num_candidates=5, top_k=3, max_batch_requests=4,
                            user_history_max=50, max_body_bytes=64 * 1024, request_timeout_s=10.0, body_timeout_s=5.0,
                            cache_ttl_s=60, queue_max=16)
        app = create_app(settings, resources=stack.resources(), key_prefix="recranker-fuzz:")
        ops = operations(app.openapi())
        print(f"fuzzing {len(ops)} operations: {', '.join(o.name for o in ops)}", flush=True)
        with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
            t = time.monotonic()
            tally = fuzz(client, ops, pools_of(stack.dataset), args.cases, args.seed,
                         deadline=t + args.max_seconds, on_problem=lambda p: print("PROBLEM", p[:500], flush=True))
            run_s = time.monotonic() - t
    figures = tally.as_dict()
    result = {
        "what": "generated requests across every OpenAPI endpoint (tests/service/fuzzing.py), fake engine, "
                "private redis-server, uvicorn on loopback",
        "machine": machine(note="shared by parallel jobs"),
        "python": sys.version.split()[0],
        "seed": args.seed, "cases_requested": args.cases, "max_seconds": args.max_seconds,
        "run_seconds": round(run_s, 1), "total_seconds": round(time.monotonic() - started, 1),
        "operations": [o.name for o in ops],
        **figures,
    }
    write_report(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "first_problems"}, indent=1))
    print(f"cases {tally.cases}, requests {tally.requests}, status>=500 {figures['status_ge_500']}, "
          f"problems {figures['problems']}; wrote {args.out}")
    return 0 if not tally.problems else 1


if __name__ == "__main__":
    sys.exit(main())
