"""A fusion tried offline: let the LLM reorder only where the backbone is unsure.

Hypothesis: the LLM should help where the backbone's top two candidates are close and
only hurt where the backbone is confident. For a user, gate = (z1 - z2 < tau), z being the
backbone's z-scores over the candidates (the hybrid's own prior); gated users get the
hybrid at grid weights, the others the backbone order. Choices (weights, tau) on one
evaluation run's users, with the same rule as ``recranker weights``: the best point's
paired 95% CI of (hybrid - backbone) NDCG@3 and the selection cross-validated over 5
folds, for the plain grid (tau = inf) and for grid x tau side by side.

Reads the per-user outcomes of a validation run (RECRANKER_HOME/eval-cache/<key>.jsonl,
written by `recranker weights` or `recranker evaluate --stage valid`); no LLM work.

    python -m bench.gated_fusion VALID.jsonl --out docs/eval/gated-fusion.json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from bench.report import write_report
from ranker.ensemble import BACKBONE_ONLY, EnsembleWeights, combine, order_by, zscore
from training.evaluate import UserOutcome, read_outcomes
from common.stats import PAIRED_RESAMPLES, bootstrap_ci, cross_validated_diffs
from training.weights import metric_values, weight_grid

TAUS = (0.25, 0.5, 0.75, 1.0, 1.5, math.inf)  # inf: every user gated in (the plain grid)
METRIC = "NDCG@3"


def backbone_gap(o: UserOutcome) -> float:
    """z-score distance between the backbone's first and second candidate."""
    z = zscore(dict(zip(o.candidates, o.backbone_scores)), o.candidates)
    first, second = sorted(z.values(), reverse=True)[:2]
    return first - second


def gated_rank(o: UserOutcome, weights: EnsembleWeights, tau: float) -> int | None:
    """0-based rank of the target in the gated order (None: not a candidate)."""
    if not o.target_is_candidate:
        return None
    backbone = dict(zip(o.candidates, o.backbone_scores))
    use = weights if o.mode_scores and backbone_gap(o) < tau else BACKBONE_ONLY
    return order_by(combine(o.candidates, o.mode_scores, backbone, use), o.candidates, backbone).index(o.target)


def diff_matrix(outcomes: list[UserOutcome], points: list[tuple[EnsembleWeights, float]]) -> np.ndarray:
    """(points, users): per user, gated hybrid - backbone on ``METRIC``."""
    base = metric_values([gated_rank(o, BACKBONE_ONLY, 0.0) for o in outcomes], METRIC)
    return np.stack([metric_values([gated_rank(o, w, tau) for o in outcomes], METRIC) - base for w, tau in points])


def select(diffs: np.ndarray, points: list[tuple[EnsembleWeights, float]], seed: int) -> dict:
    best = int(np.argmax(diffs.mean(axis=1)))
    lo, hi = bootstrap_ci(diffs[best], n_boot=PAIRED_RESAMPLES, seed=seed)
    cv = cross_validated_diffs(diffs, seed=seed)
    cv_lo, cv_hi = bootstrap_ci(cv, n_boot=PAIRED_RESAMPLES, seed=seed)
    w, tau = points[best]
    return {"weights": w.to_dict(), "tau": None if math.isinf(tau) else tau, "diff": float(diffs[best].mean()),
            "ci": [lo, hi], "cross_validated": {"diff": float(cv.mean()), "ci": [cv_lo, cv_hi]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outcomes", type=Path, help="a validation run's eval-cache .jsonl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/out/gated-fusion.json"))
    args = ap.parse_args()
    outcomes = list(read_outcomes(args.outcomes).values())
    if not outcomes:
        raise SystemExit(f"{args.outcomes}: no outcomes")
    llm_grid = [w for w in weight_grid() if w != BACKBONE_ONLY]
    points = [(w, tau) for tau in TAUS for w in llm_grid]
    diffs = diff_matrix(outcomes, points)
    plain = [k for k, (_, tau) in enumerate(points) if math.isinf(tau)]
    scored = [o for o in outcomes if o.mode_scores]
    result = {
        "source": str(args.outcomes), "users": len(outcomes), "users_llm_ranked": len(scored), "metric": METRIC,
        "gated_share_by_tau": {str(t): float(np.mean([backbone_gap(o) < t for o in scored])) for t in TAUS},
        "plain_grid": select(diffs[plain], [points[k] for k in plain], args.seed),
        "grid_x_tau": select(diffs, points, args.seed),
        "best_by_tau": {str(t): float(diffs[[k for k, p in enumerate(points) if p[1] == t]].mean(axis=1).max())
                        for t in TAUS},
    }
    for name in ("plain_grid", "grid_x_tau"):
        r = result[name]
        print(f"{name}: {r['weights']} tau {r['tau']}: {METRIC} hybrid - backbone {r['diff']:+.4f} "
              f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}], cross-validated {r['cross_validated']['diff']:+.4f} "
              f"[{r['cross_validated']['ci'][0]:+.4f}, {r['cross_validated']['ci'][1]:+.4f}]")
    print("best in-sample by tau:", {t: round(v, 4) for t, v in result["best_by_tau"].items()})
    write_report(args.out, result)


if __name__ == "__main__":
    main()
