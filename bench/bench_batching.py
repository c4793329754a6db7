"""Engine batching: N users ranked one at a time vs together, same engine, same process.

What a service micro-batch buys, without HTTP around it: for each batch size B, the same
B users (ML-100K, candidates = the test like + the most popular unseen items, scored by
popularity as the backbone) are ranked (a) with B calls of ``Ranker.rank`` and (b) with
one ``Ranker.rank_many`` call, in alternating rounds. Prints users/s of both and their
ratio, forward passes and tokens, and how far (b) is from (a): the largest difference of
the label log-probabilities the engine returns (the direct check: padding and batch
shapes may move low-precision arithmetic a little, nothing more), of the hybrid scores,
and the share of identical top-k lists (z-scored hybrids of a model with no preference,
e.g. random weights, are noise, so those two only mean something for a trained model).
Writes bench/out/batching.json.

    python -m bench.bench_batching --data ../shared/data/ml-100k --batch-sizes 1 8 --threads 1
    python -m bench.bench_batching --data ... --model /path/to/checkpoint --device cuda --batch-sizes 1 8 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_ranker import build_requests
from bench.report import machine, write_report
from candidate_gen.data import load_movielens_100k
from candidate_gen.split import leave_one_out
from ranker.adapter import load_adapter
from ranker.chat import to_scoring_prompt
from ranker.engines.hf import HFEngine
from ranker.model import BUNDLED_MODEL, prepare_model
from ranker.modes.registry import LABEL_SETS
from ranker.ranker import Ranker, RankerConfig, RankRequest
from ranker.types import MODES, RankResult


def _sync(engine: HFEngine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def timed(engine: HFEngine, fn) -> tuple[float, list[RankResult]]:
    _sync(engine)
    t = time.perf_counter()
    results = fn()
    _sync(engine)
    return time.perf_counter() - t, results


def max_score_diff(a: list[RankResult], b: list[RankResult]) -> tuple[float, float]:
    """(largest |hybrid score difference| over the top-k both returned, share of identical top-k lists)."""
    diff, same = 0.0, 0
    for ra, rb in zip(a, b):
        sa, sb = {i.item_id: i.score for i in ra.items}, {i.item_id: i.score for i in rb.items}
        diff = max([diff] + [abs(sa[i] - sb[i]) for i in sa.keys() & sb.keys()])
        same += [i.item_id for i in ra.items] == [i.item_id for i in rb.items]
    return diff, same / max(1, len(a))


def max_logprob_diff(ranker: Ranker, requests: list[RankRequest]) -> float:
    """Largest |log P(label)| difference between scoring each request alone and all together."""
    per_request = [{m: [to_scoring_prompt(ranker.engine, p) for p in plan.prompts]
                    for m, plan in ranker.plans(r).items()} for r in requests]
    diff = 0.0
    for mode in MODES:
        labels = LABEL_SETS[mode]
        alone = np.concatenate([ranker.engine.score(p[mode], labels).logprobs for p in per_request])
        together = ranker.engine.score([x for p in per_request for x in p[mode]], labels).logprobs
        diff = max(diff, float(np.abs(alone - together).max()))
    return diff


def measure(ranker: Ranker, requests: list[RankRequest], rounds: int) -> dict:
    engine = ranker.engine
    one_s, many_s = [], []
    for _ in range(rounds):
        s, singles = timed(engine, lambda: [ranker.rank(r) for r in requests])
        one_s.append(s)
        s, batched = timed(engine, lambda: ranker.rank_many(requests))
        many_s.append(s)
    bad = [r.degraded_reason for r in singles + batched if r.degraded]
    if bad:
        raise SystemExit(f"ranker degraded: {bad[0]}")
    diff, same = max_score_diff(singles, batched)
    n = len(requests)
    one, many = statistics.median(one_s), statistics.median(many_s)
    return {
        "users": n,
        "one_at_a_time": {"median_s": one, "runs_s": one_s, "users_per_s": n / one,
                          "forward_passes": sum(r.llm_calls for r in singles)},
        "batched": {"median_s": many, "runs_s": many_s, "users_per_s": n / many,
                    "forward_passes": sum(r.llm_calls for r in batched)},
        "throughput_ratio_batched_over_one": one / many,
        "forward_tokens": sum(r.forward_tokens for r in batched),
        "max_abs_logprob_diff": max_logprob_diff(ranker, requests),
        "max_abs_score_diff": diff,
        "identical_topk_share": same,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="unpacked ml-100k folder")
    ap.add_argument("--model", default=BUNDLED_MODEL, help="bundled model name or a local checkpoint folder")
    ap.add_argument("--model-cache", type=Path, default=Path("artifacts/models"))
    ap.add_argument("--adapter", type=Path, default=None, help="PEFT adapter folder (default: base model)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--pairwise-budget", type=int, default=5)
    ap.add_argument("--listwise-shuffles", type=int, default=3)
    ap.add_argument("--history-token-budget", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per batch size, after one warm-up")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/batching.json"))
    args = ap.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.rounds < 1:
        ap.error("--batch-sizes and --rounds must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_movielens_100k(args.data)
    users = [str(u) for u in range(1, 944)]
    requests = build_requests(leave_one_out(ds), users[: 2 * max(args.batch_sizes)], args.candidates)
    if len(requests) < max(args.batch_sizes):
        raise SystemExit(f"only {len(requests)} users with a test like among the first {2 * max(args.batch_sizes)}")
    engine = HFEngine(prepare_model(args.model, args.model_cache), adapter_path=args.adapter, device=args.device,
                      dtype=args.dtype)
    # the prompt layout the adapter was tuned on (genres or not), as the service renders it
    genres = load_adapter(args.adapter).item_genres if args.adapter else False
    config = RankerConfig(pairwise_budget=args.pairwise_budget, listwise_shuffles=args.listwise_shuffles,
                          history_token_budget=args.history_token_budget, item_genres=genres)
    ranker = Ranker(engine, config)
    ranker.rank_many(requests[: max(args.batch_sizes)])  # warm-up: allocations, kernels, tokenizer caches
    load = os.getloadavg()
    report = {
        "machine": machine(torch_threads=torch.get_num_threads(), device=str(engine.device),
                           dtype=str(engine.dtype).removeprefix("torch."),
                           gpu=torch.cuda.get_device_name() if engine.device.type == "cuda" else None,
                           loadavg_at_start=load),
        "model": engine.model_name, "adapter": engine.adapter_name,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": {},
    }
    print(f"{'B':>4}{'one-at-a-time u/s':>20}{'batched u/s':>14}{'ratio':>8}{'passes 1x1':>12}{'passes B':>10}"
          f"{'max |dlogp|':>13}{'max |dscore|':>14}{'same top-k':>12}")
    for b in args.batch_sizes:
        r = measure(ranker, requests[:b], args.rounds)
        report["results"][str(b)] = r
        print(f"{b:>4}{r['one_at_a_time']['users_per_s']:>20.3f}{r['batched']['users_per_s']:>14.3f}"
              f"{r['throughput_ratio_batched_over_one']:>8.2f}{r['one_at_a_time']['forward_passes']:>12}"
              f"{r['batched']['forward_passes']:>10}{r['max_abs_logprob_diff']:>13.2e}{r['max_abs_score_diff']:>14.2e}{r['identical_topk_share']:>12.2f}",
              flush=True)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
