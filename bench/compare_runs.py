"""Two evaluation runs on the same users, compared per user (paired): e.g. two adapters.

`recranker evaluate` and `recranker weights` keep each user's outcome in
RECRANKER_HOME/eval-cache/<key>.jsonl. Given two such files (same dataset, stage and
backbone), this prints, per row (backbone, each mode, the hybrid at the given weights),
NDCG@3 and HR@3 of both runs and the paired difference B - A with its bootstrap 95% CI.
``--weights-b`` scores B's hybrid at other weights than A's: two adapters, each at the
weights chosen for it on validation.

    python -m bench.compare_runs A.jsonl B.jsonl --names v2 v3 --out docs/eval/v2-vs-v3.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ranker.ensemble import EnsembleWeights
from training.evaluate import UserOutcome, read_outcomes, row_ranks
from training.report import PAIRED_RESAMPLES, paired_differences, per_user_metrics

METRICS = ("NDCG@3", "HR@3")


def compare(a: list[UserOutcome], b: list[UserOutcome], weights: EnsembleWeights, seed: int = 0,
            weights_b: EnsembleWeights | None = None) -> dict:
    if [(o.user_id, o.target, o.candidates) for o in a] != [(o.user_id, o.target, o.candidates) for o in b]:
        raise SystemExit("the two runs differ in users, held-out items or candidates: not a paired comparison")
    ra, rb = row_ranks(a, weights), row_ranks(b, weights_b or weights)
    rows = {}
    for row in ra:
        ma, mb = per_user_metrics(ra[row]), per_user_metrics(rb[row])
        paired = paired_differences({"a": ra[row], "b": rb[row]}, baseline="a", seed=seed)["b"]
        rows[row] = {metric: {"a": float(ma[metric].mean()), "b": float(mb[metric].mean()),
                              "diff": paired[metric]["diff"], "ci": paired[metric]["ci"]} for metric in METRICS}
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--names", nargs=2, default=("A", "B"))
    ap.add_argument("--weights", default=None, help="hybrid weights as JSON (default: 1/3 per mode, backbone 0.3)")
    ap.add_argument("--weights-b", default=None, help="B's hybrid weights as JSON (default: --weights)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    weights = EnsembleWeights(**json.loads(args.weights)) if args.weights else EnsembleWeights()
    weights_b = EnsembleWeights(**json.loads(args.weights_b)) if args.weights_b else weights
    a, b = read_outcomes(args.a), read_outcomes(args.b)
    users = sorted(set(a) & set(b), key=int if all(u.isdigit() for u in a) else str)
    if len(users) != len(a) or len(users) != len(b):
        raise SystemExit(f"the runs hold {len(a)} and {len(b)} users, {len(users)} in common: finish both first")
    rows = compare([a[u] for u in users], [b[u] for u in users], weights, weights_b=weights_b)
    na, nb = args.names
    print(f"{len(users)} users; paired difference {nb} - {na}, bootstrap 95% CI ({PAIRED_RESAMPLES} resamples)")
    for row, metrics in rows.items():
        m = metrics["NDCG@3"]
        print(f"{row:<10} NDCG@3 {na} {m['a']:.4f}  {nb} {m['b']:.4f}  diff {m['diff']:+.4f} "
              f"[{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}]")
    if args.out:
        args.out.write_text(json.dumps({"a": {"name": na, "file": args.a.name}, "b": {"name": nb, "file": args.b.name},
                                        "users": len(users), "hybrid_weights": asdict(weights),
                                        "hybrid_weights_b": asdict(weights_b), "rows": rows},
                                       indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
