"""Choosing a backbone's recency re-ordering on validation users (no LLM, seconds).

The grid is every (window, weight) pair plus "off" first (it wins ties). The objective is
paired: the mean over validation users of (re-ordered - backbone) NDCG@3 over the backbone's
top-N. Recency is switched on only by the rule the hybrid weights follow: the chosen point's
paired 95% bootstrap interval above 0, and the interval of the 5-fold cross-validated
differences of the whole selection (window and weight picked again on the other folds)
above 0 too. Otherwise the choice is "off", with the evidence either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from candidate_gen.evaluate import liked_history
from candidate_gen.metrics import ndcg
from candidate_gen.recency import CoLikes, RecencyConfig, zscores
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import Split
from common.stats import CV_FOLDS, PAIRED_RESAMPLES, argmax_first, bootstrap_ci, cross_validated_diffs

WINDOWS = (1, 2, 3, 5, 10)
WEIGHTS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
NUM_CANDIDATES = 10
METRIC_K = 3
RULE = ("recency on only if the paired 95% CI of (re-ordered - backbone) NDCG@3 on validation users is above 0 "
        "and the 95% CI of the selection's cross-validated differences is above 0 too")


@dataclass
class RecencyChoice:
    config: RecencyConfig  # weight 0: off
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"weight": self.config.weight, "window": self.config.window, "evidence": self.evidence}

    def describe(self) -> str:
        """One line: the verdict and its validation evidence."""
        return describe_recency(self.to_dict())


def describe_recency(choice: dict) -> str:
    """One line for a recorded choice (``RecencyChoice.to_dict``, as a backbone's meta holds it)."""
    verdict = f"weight {choice['weight']:g}, window {choice['window']}" if choice["weight"] > 0 else "off"
    best, cv = choice["evidence"].get("best"), choice["evidence"].get("cross_validated")
    if not best or not cv:
        return verdict
    return (f"{verdict} (validation NDCG@3 {best['diff']:+.4f} [{best['ci'][0]:+.4f}, {best['ci'][1]:+.4f}], "
            f"cross-validated [{cv['ci'][0]:+.4f}, {cv['ci'][1]:+.4f}])")


def target_ranks(scores: np.ndarray, target_pos: np.ndarray) -> np.ndarray:
    """0-based rank of each user's target under ``scores`` (U, N), ties kept in list order;
    -1 where the target is not a candidate (``target_pos`` -1)."""
    rows = np.arange(len(scores))
    target = scores[rows, np.maximum(target_pos, 0)][:, None]
    earlier = np.arange(scores.shape[1])[None, :] < target_pos[:, None]
    rank = ((scores > target) | ((scores == target) & earlier)).sum(axis=1)
    return np.where(target_pos >= 0, rank, -1)


def ndcg_values(ranks: np.ndarray, k: int = METRIC_K) -> np.ndarray:
    return np.array([ndcg(int(r), k) if r >= 0 else 0.0 for r in ranks])


@dataclass
class StageCandidates:
    """The backbone's top-N for every user with a held-out item at a stage."""
    items: np.ndarray  # (U, N) item indices, backbone order
    backbone_z: np.ndarray  # (U, N) z-scores of the backbone's scores
    target_pos: np.ndarray  # (U,) the held-out item's position, -1 when not a candidate
    histories: list[list[int]]  # visible likes, oldest first

    def base_ndcg(self) -> np.ndarray:
        """Per user: NDCG@3 in the backbone's order."""
        return ndcg_values(target_ranks(self.backbone_z, self.target_pos))

    def gains(self, co_likes: CoLikes, config: RecencyConfig, base: np.ndarray | None = None,
              signal: np.ndarray | None = None) -> np.ndarray:
        """Per user: NDCG@3 re-ordered with ``config`` minus NDCG@3 in the backbone's order
        (``base`` and ``signal``: already computed for these users and ``config.window``)."""
        base = self.base_ndcg() if base is None else base
        if not config.active:
            return np.zeros(len(base))
        signal = self.signal(co_likes, config.window) if signal is None else signal
        return ndcg_values(target_ranks(self.backbone_z + config.weight * signal, self.target_pos)) - base

    def signal(self, co_likes: CoLikes, window: int) -> np.ndarray:
        return np.stack([zscores(co_likes.recent_similarity(row, h, window))
                         for row, h in zip(self.items, self.histories)])


def stage_candidates(generator: CandidateGenerator, split: Split, stage: str,
                     num_candidates: int = NUM_CANDIDATES) -> StageCandidates | None:
    """None when there are no such users or fewer than 2 candidates each."""
    if generator.recency is not None:
        raise ValueError("recency is chosen and measured over the backbone's own order, not an already re-ordered one")
    users = split.eval_users(stage)
    if not users:
        return None
    histories = [liked_history(split, u, stage) for u in users]
    found = generator.candidates_many(users, histories, num_candidates, [split.users[u].seen(stage) for u in users],
                                      threads=None)
    n = min(len(row) for row in found)
    if n < 2:
        return None
    items = np.array([[s.item for s in row[:n]] for row in found])
    targets = [split.users[u].held_out(stage) for u in users]
    target_pos = np.array([int(np.flatnonzero(row == t)[0]) if t in row else -1 for t, row in zip(targets, items)])
    backbone_z = np.stack([zscores([s.score for s in row[:n]]) for row in found])
    return StageCandidates(items, backbone_z, target_pos, histories)


def choose_recency(generator: CandidateGenerator, split: Split, co_likes: CoLikes,
                   num_candidates: int = NUM_CANDIDATES, seed: int = 0) -> RecencyChoice:
    """The (window, weight) that re-orders ``generator``'s top-N best on validation users,
    kept only when it passes ``RULE``; ``generator`` must not re-order by itself."""
    valid = stage_candidates(generator, split, "valid", num_candidates)
    if valid is None:
        return RecencyChoice(RecencyConfig(), {"reason": "no validation users with 2 or more candidates", "rule": RULE})
    base = valid.base_ndcg()
    grid: list[RecencyConfig] = [RecencyConfig()]
    for window in WINDOWS:
        grid += [RecencyConfig(weight, window) for weight in WEIGHTS]
    signals = {window: valid.signal(co_likes, window) for window in WINDOWS}
    diff_matrix = np.stack([valid.gains(co_likes, c, base, signals.get(c.window)) for c in grid])
    best = argmax_first(diff_matrix.mean(axis=1))
    lo, hi = bootstrap_ci(diff_matrix[best], n_boot=PAIRED_RESAMPLES, seed=seed)
    cv = cross_validated_diffs(diff_matrix, seed=seed)
    cv_lo, cv_hi = bootstrap_ci(cv, n_boot=PAIRED_RESAMPLES, seed=seed)
    passes = bool(diff_matrix[best].mean() > 0 and lo > 0 and cv_lo > 0)
    chosen = grid[best]
    evidence = {
        "users": len(base), "target_in_candidates": int((valid.target_pos >= 0).sum()),
        "num_candidates": valid.items.shape[1], "backbone_ndcg@3": float(base.mean()),
        "best": {"weight": chosen.weight, "window": chosen.window, "diff": float(diff_matrix[best].mean()),
                 "ci": [lo, hi]},
        "cross_validated": {"folds": CV_FOLDS, "diff": float(cv.mean()), "ci": [cv_lo, cv_hi]},
        "grid": {"windows": list(WINDOWS), "weights": list(WEIGHTS)}, "passes": passes, "rule": RULE, "seed": seed,
    }
    return RecencyChoice(chosen if passes else RecencyConfig(), evidence)
