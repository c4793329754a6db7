"""Does the shipped numeric setup rank as well as float32? The paper's protocol, twice.

The same users (every test user by default), the same backbone candidates and the same
adapter, scored once with the engine as the service builds it (RECRANKER_DTYPE, default
auto: bfloat16 on CPUs with bf16 matrix units, the LoRA update folded into the weights)
and once in float32. Per row (each mode, and the hybrid of all three modes with default
weights: the shipped weights may serve the backbone alone, which would hide any change):
NDCG@3 of both, the paired difference (shipped - float32) with its bootstrap 95% CI over
per-user differences, and how often the two agree on each mode's top-1 item and top-3
set, over the users the LLM ranked (those whose held-out item is a candidate).

Per-user outcomes are cached under RECRANKER_HOME/eval-cache (keyed by dtype), so an
interrupted run continues. Writes bench/out/dtype.json.

    python -m bench.bench_dtype --backbone lightgcn --threads 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.report import machine, write_report
from ranker.ensemble import EnsembleWeights, order_by
from stack.settings import Settings
from training.evaluate import EvalConfig, row_ranks
from training.pipeline import DataChoice, _eval_stack, _outcomes
from training.report import paired_differences, per_user_metrics

METRIC = "NDCG@3"


def mode_orders(outcome, mode: str) -> list[str]:
    backbone = dict(zip(outcome.candidates, outcome.backbone_scores))
    return order_by(outcome.mode_scores[mode], outcome.candidates, backbone)


def compare(shipped: list, fp32: list, seed: int = 0) -> dict:
    """Rows of (shipped, float32) for the same users in the same order."""
    if [o.user_id for o in shipped] != [o.user_id for o in fp32]:
        raise ValueError("the two runs hold different users")
    weights = EnsembleWeights()  # all three modes and the backbone prior: every mode counts
    ranks = {"shipped": row_ranks(shipped, weights), "float32": row_ranks(fp32, weights)}
    out = {}
    for row in ranks["shipped"]:
        a = per_user_metrics(ranks["shipped"][row])[METRIC]
        b = per_user_metrics(ranks["float32"][row])[METRIC]
        paired = paired_differences({"shipped": ranks["shipped"][row], "float32": ranks["float32"][row]},
                                    baseline="float32", seed=seed)["shipped"][METRIC]
        entry = {"shipped": float(a.mean()), "float32": float(b.mean()), "diff": paired["diff"], "ci": paired["ci"],
                 "not_worse": bool(paired["ci"][1] >= 0)}
        ranked = [(s, f) for s, f in zip(shipped, fp32) if row in s.mode_scores and row in f.mode_scores]
        if ranked:
            top = [(mode_orders(s, row), mode_orders(f, row)) for s, f in ranked]
            entry["top1_agreement"] = float(np.mean([x[0] == y[0] for x, y in top]))
            entry["top3_overlap"] = float(np.mean([len(set(x[:3]) & set(y[:3])) / 3 for x, y in top]))
            entry["users_ranked"] = len(ranked)
        out[row] = entry
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="lightgcn")
    ap.add_argument("--adapter", help="adapter folder (default: RECRANKER_ADAPTER)")
    ap.add_argument("--stage", choices=("test", "valid"), default="test")
    ap.add_argument("--users", type=int, help="a seeded subset (default: every user)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", type=Path, default=Path("bench/out/dtype.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings()
    config = EvalConfig(stage=args.stage, users=args.users)
    runs, engines = {}, {}
    for name, dtype in (("shipped", settings.dtype), ("float32", "float32")):
        built = _eval_stack(settings.model_copy(update={"dtype": dtype}), DataChoice(), args.backbone, 0, args.adapter,
                            config.num_candidates)
        engines[name] = built.ranker.engine.info
        print(f"{name}: {engines[name]}", flush=True)
        runs[name] = _outcomes(settings, built, config)
        del built
    rows = compare(runs["shipped"], runs["float32"])
    result = {"machine": machine(), "backbone": args.backbone, "stage": args.stage, "users": len(runs["shipped"]),
              "engines": engines, "metric": METRIC, "hybrid_weights": EnsembleWeights().to_dict(), "rows": rows}
    print(f"{'row':<10}{'shipped':>9}{'float32':>9}{'diff':>9}  95% CI             top-1  top-3")
    for row, r in rows.items():
        agree = (f"{r['top1_agreement']:.3f}  {r['top3_overlap']:.3f}" if "top1_agreement" in r else "")
        print(f"{row:<10}{r['shipped']:>9.4f}{r['float32']:>9.4f}{r['diff']:>+9.4f}  "
              f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]  {agree}")
    write_report(args.out, result)


if __name__ == "__main__":
    main()
