"""Where the LLM stage's time goes: torch's profiler over one service-shaped request.

Builds the ranker from the service's settings (as bench_ranker does), prints the token
layout of one request (prefix tokens, suffix lengths), times a few distinct users, then
profiles one more and prints the operators by self CPU time (matmuls vs attention vs
element-wise work). Prefix cache off, so every request pays its prefix.

    python -m bench.profile_engine --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.bench_ranker import build_requests, scoring_prompts, test_user_ids
from ranker.modes.registry import ALL_LABELS
from stack.build import build_ranker, load_split, resolve_adapter
from stack.settings import Settings


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--users", type=int, default=4, help="timed users before the profiled one")
    ap.add_argument("--rows", type=int, default=20, help="operators shown")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings().model_copy(update={"prefix_cache_mb": 0})
    split = load_split(settings)
    ids = test_user_ids(split)
    ranker = build_ranker(settings, resolve_adapter(settings))
    engine = ranker.engine
    requests = build_requests(split, ids[: args.users + 2], settings.num_candidates)
    prompts, _ = scoring_prompts(ranker, engine, requests)
    first = prompts[0]
    suffixes = [engine.count_tokens(p.suffix) for p in first]
    print(f"prefix {engine.count_tokens(first[0].prefix)} tokens; {len(suffixes)} suffixes, {sum(suffixes)} tokens: "
          f"{suffixes}; pack {getattr(engine, 'pack_tokens', '-')} tokens", flush=True)
    engine.score(first, ALL_LABELS)  # warm-up
    for user_prompts in prompts[1:-1]:
        t = time.perf_counter()
        batch = engine.score(user_prompts, ALL_LABELS)
        print(f"{time.perf_counter() - t:.3f} s, {batch.forward_tokens} forward tokens, {batch.calls} passes")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.score(prompts[-1], ALL_LABELS)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
