"""Choose the hybrid ensemble's weights on validation users (never on test users).

The objective is paired: the mean over the same users of (hybrid - backbone) NDCG@3, and
the grid includes "backbone only" (every mode weight 0, no LLM time). The chosen LLM
weights are served only if their paired 95% bootstrap interval on validation lies above 0
and so does the interval of the k-fold cross-validated differences of the whole selection
procedure; otherwise the weights say "backbone only" and ``llm_helps`` is false, with the
evidence. The in-sample interval alone is optimistic: it is computed on the users the
weights were chosen on (the best of ~120 grid points). The cross-validated differences are
the out-of-sample check, and their mean alone (the rule until 2026-12-06) was too weak:
four selections had an in-sample interval above 0, two of them a cross-validated mean
above 0 as well (+0.0065, +0.0013), and all four lost to the backbone on test
(docs/results.md); none had a cross-validated interval above 0.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ranker.ensemble import BACKBONE_ONLY, WEIGHTS_FILE, EnsembleWeights, WeightSet
from training.data_io import write_text_atomic
from training.evaluate import UserOutcome, row_ranks
from common.stats import CV_FOLDS, PAIRED_RESAMPLES, bootstrap_ci, cross_validated_diffs
from common.stats import argmax_first as _argmax_first
from training.report import per_user_metrics

# The metric the serving verdict (and its cross-validated check) is always on.
VERDICT_METRIC = "NDCG@3"
MODE_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Up to 5: the best LLM mixes on validation sat at the old edge (2), where the LLM only
# reorders near-ties of the backbone; the grid should contain its optimum, not clip it.
BACKBONE_STEPS = (0.0, 0.15, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0)
RULE = ("LLM weights served only if the paired 95% CI of (hybrid - backbone) on validation is above 0 "
        "and the 95% CI of the selection's cross-validated differences is above 0 too")


def uses_llm(w: EnsembleWeights) -> bool:
    return w.pointwise > 0 or w.pairwise > 0 or w.listwise > 0


def weight_grid() -> list[EnsembleWeights]:
    """Backbone only first (it wins ties), then mode weights on a simplex grid (at least one
    mode on) times backbone-prior weights."""
    grid = [BACKBONE_ONLY]
    for p, q in itertools.product(MODE_STEPS, repeat=2):
        r = round(1.0 - p - q, 4)
        if r < -1e-9:
            continue
        for b in BACKBONE_STEPS:
            grid.append(EnsembleWeights(pointwise=p, pairwise=q, listwise=max(r, 0.0), backbone=b))
    return grid


def metric_cutoff(metric: str) -> int:
    """k of 'HR@k' or 'NDCG@k'; ValueError for anything else."""
    name, _, k = metric.partition("@")
    if name not in ("HR", "NDCG") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric must be HR@k or NDCG@k with k >= 1, got {metric!r}")
    return int(k)


def metric_values(ranks: Sequence[int | None], metric: str) -> np.ndarray:
    """Per user ``metric`` ('HR@k' or 'NDCG@k', any k) of these target ranks."""
    return per_user_metrics(ranks, ks=(metric_cutoff(metric),))[metric]


def paired_diffs(outcomes: Sequence[UserOutcome], weights: EnsembleWeights, metric: str = "NDCG@3") -> np.ndarray:
    """Per user: hybrid(weights) - backbone on ``metric``."""
    ranks = row_ranks(outcomes, weights)
    return metric_values(ranks["hybrid"], metric) - metric_values(ranks["backbone"], metric)


def objective(outcomes: Sequence[UserOutcome], weights: EnsembleWeights, metric: str = "NDCG@3") -> float:
    """Mean paired difference hybrid - backbone (the same argmax as the hybrid's mean)."""
    return float(paired_diffs(outcomes, weights, metric).mean())


def _diff_matrix(outcomes: Sequence[UserOutcome], grid: Sequence[EnsembleWeights], metric: str) -> np.ndarray:
    return np.stack([paired_diffs(outcomes, w, metric) for w in grid]) if outcomes else np.zeros((len(grid), 0))


def choose_weights(outcomes: Sequence[UserOutcome], metric: str = "NDCG@3") -> tuple[EnsembleWeights, list[dict]]:
    """Best grid weights by mean paired difference on these (validation) outcomes, and the table."""
    grid = weight_grid()
    means = _diff_matrix(outcomes, grid, metric).mean(axis=1)
    best = grid[_argmax_first(means)]
    table = sorted(({"weights": w.to_dict(), f"{metric} diff vs backbone": float(v)} for v, w in zip(means, grid)),
                   key=lambda r: -r[f"{metric} diff vs backbone"])
    return best, table


@dataclass
class Selection:
    weights: EnsembleWeights  # what to serve: the best LLM weights, or backbone only
    llm_helps: bool
    evidence: dict
    table: list[dict] = field(default_factory=list)


def serves_llm(diff: float, ci_low: float, cv_ci_low: float) -> bool:
    """The rule (``RULE``): a gain in sample, sure in sample, and sure out of sample."""
    return diff > 0 and ci_low > 0 and cv_ci_low > 0


def select_weights(outcomes: Sequence[UserOutcome], metric: str = VERDICT_METRIC, seed: int = 0,
                   n_boot: int = PAIRED_RESAMPLES, objective: str | None = None) -> Selection:
    """The served weights and the verdict: LLM weights only when their paired validation
    interval is above 0 (see the module docstring).

    ``objective`` (default ``metric``): what the grid point is chosen by. The verdict is
    always on ``metric``. A smoother objective (NDCG@10 over 10 candidates: every rank
    counts, not only a top-3 cut-off) makes the argmax over ~120 grid points less of a
    draw from noise; the cross-validated check repeats the choice on that objective."""
    if not outcomes:
        raise ValueError("no validation users to choose weights on")
    objective = objective or metric
    grid = weight_grid()
    diffs = _diff_matrix(outcomes, grid, metric)
    choose_on = diffs if objective == metric else _diff_matrix(outcomes, grid, objective)
    means = diffs.mean(axis=1)
    llm_idx = [k for k, w in enumerate(grid) if uses_llm(w)]
    best_llm = llm_idx[_argmax_first(choose_on.mean(axis=1)[llm_idx])]
    lo, hi = bootstrap_ci(diffs[best_llm], n_boot=n_boot, seed=seed)
    cv = cross_validated_diffs(diffs, seed=seed, choose_on=choose_on)
    cv_lo, cv_hi = bootstrap_ci(cv, n_boot=n_boot, seed=seed)
    helps = serves_llm(float(means[best_llm]), lo, cv_lo)
    backbone = metric_values(row_ranks(outcomes, BACKBONE_ONLY)["backbone"], metric)
    evidence = {
        "stage": "valid", "metric": metric, "objective": objective, "users": len(outcomes),
        "users_with_target_in_candidates": int(sum(o.target_is_candidate for o in outcomes)),
        "backbone": float(backbone.mean()),
        "best_llm_weights": grid[best_llm].to_dict(),
        "best_llm_hybrid": float(backbone.mean() + means[best_llm]),
        "diff": float(means[best_llm]), "ci": [lo, hi], "resamples": n_boot, "seed": seed,
        "rule": RULE,
        "cross_validated": {"folds": CV_FOLDS, "diff": float(cv.mean()), "ci": [cv_lo, cv_hi],
                            "note": "selection repeated on k-1 folds, scored on the held-out fold"},
    }
    table = sorted(({"weights": w.to_dict(), "diff": float(v)} for v, w in zip(means, grid)), key=lambda r: -r["diff"])
    return Selection(grid[best_llm] if helps else BACKBONE_ONLY, helps, evidence, table)


def weight_set_from(selections: dict[bool, Selection]) -> WeightSet:
    """The file's content from per-hint-setting selections (True: hints on)."""
    on, off = selections.get(True), selections.get(False)
    if on is None:
        raise ValueError("hints-on weights are required (the service's default setting)")
    key = {True: "hints_on", False: "hints_off"}
    return WeightSet(hints_on=on.weights, hints_off=off.weights if off else None, chosen=True,
                     llm_helps={key[h]: s.llm_helps for h, s in selections.items()},
                     evidence={key[h]: s.evidence for h, s in selections.items()})


SELECTION_FILE = "hybrid_weights_selection.json"


def load_selection(adapter_dir: Path) -> dict:
    """The selection record beside the weights ({} when there is none yet)."""
    path = Path(adapter_dir) / SELECTION_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_weights(weights: EnsembleWeights | WeightSet, adapter_dir: Path, details: dict) -> Path:
    """hybrid_weights.json (read by the ranker) and a selection record beside it.

    Plain ``EnsembleWeights`` are written as hints-on weights only (hints-off requests are
    then refused by the service)."""
    adapter_dir = Path(adapter_dir)
    path = adapter_dir / WEIGHTS_FILE
    ws = weights if isinstance(weights, WeightSet) else WeightSet(hints_on=weights, chosen=True)
    # atomic: the service reads this file at start-up and must never see half of it
    write_text_atomic(path, json.dumps(ws.to_dict(), indent=2) + "\n")
    write_text_atomic(adapter_dir / SELECTION_FILE, json.dumps(details, indent=2) + "\n")
    return path
