"""How the in-process engine lays out a request's suffixes, measured: pack size, how the
packs are filled (first-fit or balanced) and whether the LoRA update is folded into the
base weights.

A packed row's attention runs over every token of the row (the block mask hides all but
a suffix's own tokens and the prefix), so its cost grows with the square of the pack;
small packs waste less of it but pad more, since rows of one pass are padded to the
longest: first-fit fills packs greedily (a full row next to a short one), balanced fills
the same number of packs evenly (the engine's plan). A LoRA adapter kept apart adds two small
matmuls, casts and an add to every adapted projection; merged, the forward pass is the
base model's. This script scores the same service-shaped requests (the service's
settings, prompts of all three modes) under each variant, interleaved so that load on the
machine hits every variant alike, and prints per variant: median engine seconds per
request, forward tokens, and against the first variant (unmerged, first-fit pack 1024: the
engine before this benchmark) the largest change of a label probability (renormalised over its
mode's labels, as the modes read them) and the share of prompts whose best label is the same.

Writes bench/out/packing.json.

    python -m bench.bench_packing --users 8 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_ranker import build_requests, scoring_prompts, test_user_ids
from bench.report import machine, write_report
from ranker.engines.hf import HFEngine
from ranker.engines.packed import balanced_packs, first_fit_packs
from ranker.modes.base import label_probs
from ranker.modes.registry import ALL_LABELS, LABEL_COLUMNS
from stack.build import build_ranker, load_split, resolve_adapter
from stack.settings import Settings


def compare(rows: np.ndarray, base: np.ndarray, modes: list[str]) -> tuple[float, int, int]:
    """(largest |change| of a mode-renormalised label probability, prompts whose best label
    is unchanged, prompts) between two score batches of the same prompts."""
    worst, same = 0.0, 0
    for r, b, mode in zip(rows, base, modes):
        cols = LABEL_COLUMNS[mode]
        p, _ = label_probs(r[None, cols])
        q, _ = label_probs(b[None, cols])
        worst = max(worst, float(np.abs(p - q).max()))
        same += int(p.argmax() == q.argmax())
    return worst, same, len(modes)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--packs", default="512,256,192,128", help="pack sizes (tokens), comma-separated")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/out/packing.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    packs = [int(p) for p in args.packs.split(",")]

    settings = Settings()
    split = load_split(settings)
    ids = test_user_ids(split)
    adapter = resolve_adapter(settings)
    ranker = build_ranker(settings.model_copy(update={"prefix_cache_mb": 0}), adapter)
    merged = ranker.engine
    if not isinstance(merged, HFEngine):
        raise SystemExit("bench_packing measures the in-process engine: set RECRANKER_ENGINE=hf")
    apart = HFEngine(merged.model_path, adapter=adapter, device=str(merged.device), dtype=merged.dtype,
                     merge_adapter=False)
    requests = build_requests(split, ids[: args.users + 1], settings.num_candidates)
    prompts, modes = scoring_prompts(ranker, merged, requests)
    modes = modes[1:]  # the first request only warms up
    variants = ([("apart", "first-fit", 1024), ("apart", "first-fit", 256)]
                + [("merged", "first-fit", p) for p in packs] + [("merged", "balanced", p) for p in packs])
    engines = {"apart": apart, "merged": merged}
    planners = {"first-fit": first_fit_packs, "balanced": balanced_packs}
    for engine in engines.values():
        engine.score(prompts[0], ALL_LABELS)  # warm-up: first-call allocations
    times = {v: [] for v in variants}
    tokens = {v: [] for v in variants}
    rows = {v: [] for v in variants}
    for user_prompts in prompts[1:]:
        for v in variants:
            kind, planner, pack = v
            engine = engines[kind]
            engine.pack_tokens = pack
            engine.plan_packs = planners[planner]
            t = time.perf_counter()
            batch = engine.score(user_prompts, ALL_LABELS)
            times[v].append(time.perf_counter() - t)
            tokens[v].append(batch.forward_tokens)
            rows[v].append(batch.logprobs)
    base = variants[0]
    result = {"machine": machine(), "threads": torch.get_num_threads(), "dtype": str(merged.dtype),
              "adapter": merged.adapter_name, "users": len(prompts) - 1,
              "prompts_per_request": statistics.fmean(len(p) for p in prompts[1:]), "variants": []}
    print(f"{result['machine']}, {result['threads']} threads, {result['dtype']}, {result['users']} users")
    print(f"{'variant':<28}{'median s':>10}{'vs first':>10}{'tokens':>8}{'max |dp|':>10}{'same best':>11}")
    for v in variants:
        med = statistics.median(times[v])
        change = [compare(a, b, m) for a, b, m in zip(rows[v], rows[base], modes)]
        diff = max(c[0] for c in change)
        same = sum(c[1] for c in change) / sum(c[2] for c in change)
        ratio = statistics.median(times[base]) / med
        name = f"{v[0]} {v[1]} {v[2]}"
        print(f"{name:<28}{med:>10.3f}{ratio:>9.2f}x{statistics.fmean(tokens[v]):>8.0f}{diff:>10.4f}{same:>11.3f}")
        result["variants"].append({"adapter": v[0], "packs": v[1], "pack_tokens": v[2], "median_s": med, "speedup_vs_first": ratio,
                                   "forward_tokens": statistics.fmean(tokens[v]), "max_abs_prob_change": diff,
                                   "same_best_label": same, "seconds": times[v]})
    write_report(args.out, result)


if __name__ == "__main__":
    main()
