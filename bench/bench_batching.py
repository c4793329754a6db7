"""Engine batching: N users ranked one at a time vs together, same engine, same process.

What a service micro-batch buys, without HTTP around it: for each batch size B, the same
B users (ML-100K, candidates = the test like + the most popular unseen items, scored by
popularity as the backbone) are ranked (a) with B calls of ``Ranker.rank`` and (b) with
one ``Ranker.rank_many`` call, in alternating rounds. The ranker is built as the service
builds it (``stack.settings.Settings``: RECRANKER_BASE_MODEL, _ADAPTER, _DEVICE, _DTYPE, the
adapter's prompt layout, pairwise budget, listwise orders, history tokens, candidates),
all three modes forced by explicit weights, with the prefix cache off: every round then
pays for every user's whole prompt, as distinct users would. Prints users/s of both, their
ratio, the batched call's latency (p50 and p99 over rounds: every user of a batch waits
for all of it), forward passes and tokens, and how far (b) is from (a): the largest
difference of the label log-probabilities the engine returns (padding and batch shapes
may move low-precision arithmetic a little, nothing more), of the hybrid scores, and the
share of identical top-k lists (z-scored hybrids of a model with no preference, e.g.
random weights, are noise, so those two only mean something for a trained model).
Writes bench/out/batching.json.

    RECRANKER_DATA_DIR=... python -m bench.bench_batching --batch-sizes 1 8 --threads 1
    RECRANKER_DEVICE=cuda RECRANKER_BASE_MODEL=/path/to/checkpoint python -m bench.bench_batching \
        --batch-sizes 1 32 128 --rounds 10 --serial-up-to 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.bench_ranker import build_requests, test_user_ids
from bench.report import machine, write_report
from ranker.chat import to_scoring_prompt
from ranker.engines.hf import HFEngine
from ranker.modes.registry import LABEL_SETS
from ranker.ranker import Ranker, RankRequest
from ranker.types import MODES, RankResult
from stack.build import build_ranker, load_split, resolve_adapter
from stack.settings import Settings

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


def measure(ranker: Ranker, requests: list[RankRequest], rounds: int, serial: bool = True) -> dict:
    engine = ranker.engine
    one_s, many_s, singles = [], [], []
    for _ in range(rounds):
        if serial:
            s, singles = timed(engine, lambda: [ranker.rank(r) for r in requests])
            one_s.append(s)
        s, batched = timed(engine, lambda: ranker.rank_many(requests))
        many_s.append(s)
    bad = [r.degraded_reason for r in singles + batched if r.degraded]
    if bad:
        raise SystemExit(f"ranker degraded: {bad[0]}")
    n = len(requests)
    many = statistics.median(many_s)
    out = {
        "users": n,
        "batched": {"median_s": many, "runs_s": many_s, "users_per_s": n / many,
                    "latency_s": {"p50": many, "p99": float(np.percentile(many_s, 99))},
                    "forward_passes": sum(r.llm_calls for r in batched)},
        "forward_tokens": sum(r.forward_tokens for r in batched),
    }
    if serial:
        one = statistics.median(one_s)
        diff, same = max_score_diff(singles, batched)
        out |= {"one_at_a_time": {"median_s": one, "runs_s": one_s, "users_per_s": n / one,
                                  "forward_passes": sum(r.llm_calls for r in singles)},
                "throughput_ratio_batched_over_one": one / many,
                "max_abs_logprob_diff": max_logprob_diff(ranker, requests),
                "max_abs_score_diff": diff, "identical_topk_share": same}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per batch size, after one warm-up")
    ap.add_argument("--serial-up-to", type=int, default=None,
                    help="rank one at a time only for batch sizes up to this (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/batching.json"))
    args = ap.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.rounds < 1:
        ap.error("--batch-sizes and --rounds must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = Settings().model_copy(update={"prefix_cache_mb": 0})
    split = load_split(settings)
    requests = build_requests(split, test_user_ids(split)[: 2 * max(args.batch_sizes)], settings.num_candidates)
    if len(requests) < max(args.batch_sizes):
        raise SystemExit(f"only {len(requests)} users with a test like for a batch of {max(args.batch_sizes)}")
    ranker = build_ranker(settings, resolve_adapter(settings))
    engine = ranker.engine
    if not isinstance(engine, HFEngine):
        raise SystemExit("bench_batching measures the in-process engine: set RECRANKER_ENGINE=hf")
    ranker.rank_many(requests[: max(args.batch_sizes)])  # warm-up: allocations, kernels, tokenizer caches
    load = os.getloadavg()
    report = {
        "machine": machine(torch_threads=torch.get_num_threads(), device=str(engine.device),
                           dtype=str(engine.dtype).removeprefix("torch."),
                           gpu=torch.cuda.get_device_name() if engine.device.type == "cuda" else None,
                           loadavg_at_start=load),
        "model": engine.model_name, "adapter": engine.adapter_name,
        "ranker_config": asdict(ranker.config), "num_candidates": settings.num_candidates,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": {},
    }
    print(f"{'B':>4}{'one-at-a-time u/s':>19}{'batched u/s':>13}{'ratio':>7}{'batch p50 s':>12}{'p99 s':>8}"
          f"{'passes 1x1':>11}{'passes B':>9}{'max |dlogp|':>12}{'max |dscore|':>13}{'same top-k':>11}")
    for b in args.batch_sizes:
        r = measure(ranker, requests[:b], args.rounds, serial=args.serial_up_to is None or b <= args.serial_up_to)
        report["results"][str(b)] = r
        one, many = r.get("one_at_a_time"), r["batched"]
        ratio = r.get("throughput_ratio_batched_over_one")
        cells = (f"{one['users_per_s']:>19.3f}{many['users_per_s']:>13.3f}{ratio:>7.2f}"
                 if one else f"{'-':>19}{many['users_per_s']:>13.3f}{'-':>7}")
        cells += f"{many['latency_s']['p50']:>12.3f}{many['latency_s']['p99']:>8.3f}"
        cells += (f"{one['forward_passes']:>11}{many['forward_passes']:>9}{r['max_abs_logprob_diff']:>12.2e}"
                  f"{r['max_abs_score_diff']:>13.2e}{r['identical_topk_share']:>11.2f}"
                  if one else f"{'-':>11}{many['forward_passes']:>9}")
        print(f"{b:>4}{cells}", flush=True)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
