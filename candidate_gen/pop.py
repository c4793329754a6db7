"""Most-popular baseline: every user gets the same ranking, by training-like count.

As an inner product: item vector = [log(1 + count)] (d = 1), query = [1]. The log keeps
scores on a scale comparable to the learned models' and preserves the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from candidate_gen.base import Backbone


@dataclass
class PopConfig:
    """Pop has nothing to tune; the dataclass exists so every backbone takes a config."""


class PopBackbone(Backbone):
    name = "pop"

    def __init__(self, counts: np.ndarray):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or (counts < 0).any():
            raise ValueError("counts must be a 1-D array of non-negative like counts per item")
        self.counts = counts  # (n_items,)
        self._vectors = np.log1p(counts).astype(np.float32)[:, None]  # (n_items, 1)

    @classmethod
    def fit(cls, items: np.ndarray, n_items: int) -> PopBackbone:
        """Count training likes per item (``items`` is the item column of the train split)."""
        return cls(np.bincount(np.asarray(items, dtype=np.int64), minlength=n_items))

    @classmethod
    def from_vectors(cls, vectors: np.ndarray) -> PopBackbone:
        """Rebuild from saved item vectors (the inverse of log1p)."""
        return cls(np.rint(np.expm1(np.asarray(vectors, dtype=np.float64)[:, 0])))

    def item_vectors(self) -> np.ndarray:
        return self._vectors

    def query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        return np.ones(1, dtype=np.float32)
