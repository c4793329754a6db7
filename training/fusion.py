"""Learned fusion (issue 9, lever 3): logistic regression over per-mode z-scores, the
backbone's z-score and its rank, fitted on validation outcomes; an option of
`recranker weights --fusion logistic`, recorded beside the weights, not served.

One row per (user, candidate) of the users whose held-out item is a candidate (the others
cannot change any metric); label 1 for the held-out item. The fused score is the linear
predictor, so ranking needs no sigmoid. Its quality is measured as the grid weights' is:
the paired difference (fused - backbone) NDCG@3 per user, here out of fold (k-fold over
users) on validation, and, when test outcomes are given, on test users with the model
fitted on all validation users: the validation-to-test gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ranker.ensemble import order_by, zscore
from ranker.types import MODES
from training.evaluate import UserOutcome
from common.stats import PAIRED_RESAMPLES, bootstrap_ci
from training.report import per_user_metrics

FEATURES = (*(f"z_{m}" for m in MODES), "z_backbone", "backbone_rank_reciprocal")


def features(o: UserOutcome) -> np.ndarray:
    """(candidates, FEATURES) for one user; a mode that did not run contributes 0 (its average)."""
    backbone = dict(zip(o.candidates, o.backbone_scores))
    zb = zscore(backbone, o.candidates)
    cols = [[o.mode_scores.get(m, {}).get(c, 0.0) for c in o.candidates] for m in MODES]
    cols.append([zb[c] for c in o.candidates])
    cols.append([1.0 / (k + 1) for k in range(len(o.candidates))])  # candidates come in backbone order
    return np.array(cols, dtype=np.float64).T


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """Weights [bias, *coefficients] by Newton's method (IRLS) with an L2 penalty on the
    coefficients; l2 keeps it finite when a feature separates the classes."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _data(outcomes: Sequence[UserOutcome]) -> tuple[np.ndarray, np.ndarray]:
    rows = [(features(o), np.array([c == o.target for c in o.candidates], dtype=np.float64))
            for o in outcomes if o.target_is_candidate]
    if not rows:
        return np.zeros((0, len(FEATURES))), np.zeros(0)
    return np.vstack([r[0] for r in rows]), np.concatenate([r[1] for r in rows])


def fused_rank(o: UserOutcome, w: np.ndarray) -> int | None:
    """0-based rank of the held-out item under the fused score (None: not a candidate)."""
    if not o.target_is_candidate:
        return None
    scores = dict(zip(o.candidates, (features(o) @ w[1:]).tolist()))
    return order_by(scores, o.candidates, dict(zip(o.candidates, o.backbone_scores))).index(o.target)


def paired_diffs(outcomes: Sequence[UserOutcome], w: np.ndarray, metric: str = "NDCG@3") -> np.ndarray:
    fused = per_user_metrics([fused_rank(o, w) for o in outcomes])[metric]
    backbone = per_user_metrics([o.candidates.index(o.target) if o.target_is_candidate else None
                                 for o in outcomes])[metric]
    return fused - backbone


@dataclass
class FusionResult:
    coefficients: dict[str, float]
    validation: dict  # out-of-fold paired difference
    test: dict | None  # fitted on all validation users, scored on test users
    gap: float | None  # validation (out of fold) - test mean difference

    def to_dict(self) -> dict:
        return {"kind": "logistic", "features": list(FEATURES), "coefficients": self.coefficients,
                "validation_cross_validated": self.validation, "test": self.test, "validation_to_test_gap": self.gap,
                "served": False}


def _summary(d: np.ndarray, seed: int, n_boot: int) -> dict:
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return {"users": len(d), "diff": float(d.mean()) if len(d) else float("nan"), "ci": [lo, hi]}


def cross_validate(outcomes: Sequence[UserOutcome], folds: int = 5, seed: int = 0, l2: float = 1.0,
                   metric: str = "NDCG@3") -> np.ndarray:
    """Out-of-fold paired differences: each fold scored by a model fitted on the others."""
    n = len(outcomes)
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n)
    for part in np.array_split(order, min(folds, n)):
        rest = np.setdiff1d(order, part)
        x, y = _data([outcomes[i] for i in rest])
        w = fit_logistic(x, y, l2) if len(y) else np.zeros(len(FEATURES) + 1)
        out[part] = paired_diffs([outcomes[i] for i in part], w, metric)
    return out


def learn_fusion(valid: Sequence[UserOutcome], test: Sequence[UserOutcome] | None = None, *, folds: int = 5,
                 seed: int = 0, l2: float = 1.0, metric: str = "NDCG@3",
                 n_boot: int = PAIRED_RESAMPLES) -> FusionResult:
    x, y = _data(valid)
    if not len(y):
        raise ValueError("no validation user has the held-out item among the candidates: nothing to fit")
    w = fit_logistic(x, y, l2)
    val = _summary(cross_validate(valid, folds, seed, l2, metric), seed, n_boot) | {"metric": metric, "folds": folds}
    tst = _summary(paired_diffs(test, w, metric), seed, n_boot) | {"metric": metric} if test else None
    return FusionResult(dict(zip(("bias", *FEATURES), map(float, w))), val, tst,
                        val["diff"] - tst["diff"] if tst else None)
