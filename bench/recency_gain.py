"""What the candidate stage's recency re-ordering gives on test users (no LLM, seconds).

For each backbone: the (window, weight) chosen on validation users exactly as training a
backbone chooses it (candidate_gen.recency_choice), then, once, the test users' paired
NDCG@3 difference (re-ordered - backbone order) over the backbone's top-N, with its 95%
bootstrap interval, and the two means.

    RECRANKER_HOME=... RECRANKER_DATA_DIR=... python -m bench.recency_gain --out docs/bench/recency-gain.json
"""

from __future__ import annotations

import argparse
import time

from bench.report import machine, write_report
from candidate_gen.recency import CoLikes
from candidate_gen.recency_choice import NUM_CANDIDATES, choose_recency, stage_candidates
from candidate_gen.retrieve import CandidateGenerator
from common.stats import PAIRED_RESAMPLES, bootstrap_ci
from stack.build import load_backbone, load_split
from stack.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["lightgcn", "sasrec"])
    ap.add_argument("--candidates", type=int, default=NUM_CANDIDATES)
    ap.add_argument("--seed", type=int, default=0, help="backbone seed (as `recranker evaluate --seed`)")
    ap.add_argument("--out", default="docs/bench/recency-gain.json")
    args = ap.parse_args()
    settings = Settings()
    start = time.perf_counter()
    split = load_split(settings, args.dataset)
    co_likes = CoLikes.from_likes(*split.train_interactions(), split.dataset.n_items)
    results = {}
    print("| backbone | chosen on validation | valid NDCG@3 diff [CI] | cross-validated [CI] | test backbone | "
          "test re-ordered | test diff [CI] |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        generator = CandidateGenerator.from_backbone(load_backbone(settings, split, model, args.seed).backbone, "exact")
        choice = choose_recency(generator, split, co_likes, args.candidates)
        test = stage_candidates(generator, split, "test", args.candidates)
        gains = test.gains(co_likes, choice.config)
        base = float(test.base_ndcg().mean())
        lo, hi = bootstrap_ci(gains, n_boot=PAIRED_RESAMPLES)
        ev = choice.evidence
        results[model] = {"choice": choice.to_dict(),
                          "test": {"users": len(gains), "backbone_ndcg@3": base,
                                   "reordered_ndcg@3": base + gains.mean(),
                                   "diff": float(gains.mean()), "ci": [lo, hi]}}
        chosen = f"weight {choice.config.weight:g}, window {choice.config.window}" if choice.config.active else "off"
        b, cv = ev["best"], ev["cross_validated"]
        print(f"| {model} | {chosen} | {b['diff']:+.4f} [{b['ci'][0]:+.4f}, {b['ci'][1]:+.4f}] | "
              f"{cv['diff']:+.4f} [{cv['ci'][0]:+.4f}, {cv['ci'][1]:+.4f}] | {base:.4f} | {base + gains.mean():.4f} | "
              f"{gains.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    payload = {"dataset": args.dataset, "candidates": args.candidates, "results": results,
               "seconds": time.perf_counter() - start, "machine": machine(),
               "command": f"python -m bench.recency_gain --dataset {args.dataset} --models {' '.join(args.models)} "
                          f"--candidates {args.candidates} --seed {args.seed}"}
    write_report(args.out, payload)


if __name__ == "__main__":
    main()
