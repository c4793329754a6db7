"""Recency re-scoring: lift candidates that other users co-liked with this user's latest likes.

LightGCN and MF see a user's likes as a set; what a user liked last says most about what
comes next. Within the backbone's top-N, each candidate's score becomes
z(backbone score) + weight * z(co-like similarity to the user's last ``window`` likes), the
similarity being the cosine of two items' training-like vectors over users (item-kNN).
Measured on ML-100K validation users without any LLM (bench.feature_fusion, docs/results.md):
the genres, year and popularity a prompt can show add nothing to the backbone's order, this
signal does. Off by default (weight 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RecencyConfig:
    weight: float = 0.0  # of z(similarity) against the backbone's z-scores; 0 = off
    window: int = 2  # the user's latest likes that count

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"recency weight must be >= 0, got {self.weight}")
        if self.window < 1:
            raise ValueError(f"recency window must be >= 1, got {self.window}")

    @property
    def active(self) -> bool:
        return self.weight > 0


class CoLikes:
    """Item-item cosine similarity of training likes, kept sparse (the users who liked each
    item), so memory grows with the likes, not with items squared."""

    def __init__(self, likers: Sequence[np.ndarray]) -> None:
        self._likers = [np.unique(np.asarray(u, dtype=np.int64)) for u in likers]

    @classmethod
    def from_likes(cls, users: np.ndarray, items: np.ndarray, n_items: int) -> CoLikes:
        """From (user, item) training-like pairs, as ``Split.train_interactions`` gives them."""
        order = np.argsort(items, kind="stable")
        bounds = np.searchsorted(items[order], np.arange(n_items + 1))
        return cls([users[order][bounds[i]:bounds[i + 1]] for i in range(n_items)])

    @property
    def n_items(self) -> int:
        return len(self._likers)

    def similarity(self, a: int, b: int) -> float:
        la, lb = self._likers[a], self._likers[b]
        if not len(la) or not len(lb):
            return 0.0
        shared = len(np.intersect1d(la, lb, assume_unique=True))
        return shared / float(np.sqrt(len(la) * len(lb)))

    def recent_similarity(self, items: Sequence[int], history: Sequence[int], window: int) -> np.ndarray:
        """Per item, the mean similarity to the last ``window`` of ``history`` (oldest first);
        zeros for an empty history."""
        recent = list(history)[-window:]
        if not recent:
            return np.zeros(len(items))
        return np.array([np.mean([self.similarity(i, r) for r in recent]) for i in items])


@dataclass(frozen=True)
class RecencyRescorer:
    co_likes: CoLikes
    config: RecencyConfig

    def rescore(self, items: Sequence[int], scores: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """Blended scores of ``items`` (backbone ``scores``) for a user whose likes are ``history``."""
        return blend(scores, self.co_likes.recent_similarity(items, history, self.config.window), self.config.weight)


def zscores(values: np.ndarray) -> np.ndarray:
    """Z-scores over one user's candidates (the last axis: a row per user or feature also
    works); all zeros where they are constant (no information)."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(axis=-1, keepdims=True)
    spread = std > 1e-12
    return np.where(spread, (values - values.mean(axis=-1, keepdims=True)) / np.where(spread, std, 1.0), 0.0)


def blend(backbone_scores: np.ndarray, similarity: np.ndarray, weight: float) -> np.ndarray:
    """z(backbone) + weight * z(similarity): the candidate stage's score with recency on."""
    return zscores(backbone_scores) + weight * zscores(similarity)
