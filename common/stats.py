"""Paired statistics shared by every choice made on validation users: bootstrap intervals of
a mean and the cross-validated differences of a grid selection."""

from __future__ import annotations

import numpy as np

PAIRED_RESAMPLES = 2000
CV_FOLDS = 5


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling users with replacement."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def argmax_first(means: np.ndarray) -> int:
    """The first grid point within rounding of the best: ties keep the earlier, simpler point."""
    return int(np.flatnonzero(np.isclose(means, means.max()))[0])


def cross_validated_diffs(diffs: np.ndarray, folds: int = CV_FOLDS, seed: int = 0,
                          choose_on: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold paired differences of the selection procedure: for each fold, pick the
    grid point on the other folds and score it on this one. ``diffs``: (grid, users);
    ``choose_on``: the same shape, what the pick maximises (default ``diffs`` itself)."""
    choose_on = diffs if choose_on is None else choose_on
    n = diffs.shape[1]
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n)
    for part in np.array_split(order, min(folds, n)):
        rest = np.setdiff1d(order, part)
        pick = argmax_first(choose_on[:, rest].mean(axis=1)) if len(rest) else 0
        out[part] = diffs[pick, part]
    return out
