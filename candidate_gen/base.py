"""The Backbone interface every conventional recommender implements.

Every backbone reduces to an inner product: a query vector for a user (from a trained
user embedding, or built from the user's item sequence) against one vector per item.
That is what lets one FAISS index serve pop, MF, LightGCN and SASRec alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

# The backbone names, listed once (torch-free, so settings and the CLI can read them);
# candidate_gen.train.TRAINERS holds each one's training and must list the same names.
BACKBONE_NAMES = ("pop", "mf", "lightgcn", "sasrec")
# How many candidates the backbone retrieves for the LLM by default (the paper re-ranks the
# backbone's top 10); settings, evaluation and instruction building all start from it.
NUM_CANDIDATES = 10


class Backbone(ABC):
    """A trained recommender, ready to score. Training lives in ``candidate_gen.train``."""

    name: str

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """(n_items, d) float32: one vector per item index."""

    @abstractmethod
    def query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        """(d,) float32 query for a user.

        ``user`` is the dataset's user index when the user was seen in training (None for a
        user the backbone never saw); ``history`` is the user's liked item indices, oldest
        first, as known at query time. Sequential models use ``history``; embedding models
        use the trained user vector and fall back to the mean of ``history``'s item vectors.
        """

    def user_embeddings(self) -> np.ndarray | None:
        """(n_users, d) trained user vectors (for clustering), or None if the model has none."""
        return None

    def score(self, user: int | None, history: Sequence[int], items: Sequence[int]) -> np.ndarray:
        """Scores of the given items for the user (higher is better), in the given order."""
        q = self.query(user, history)
        return self.item_vectors()[np.asarray(items, dtype=np.int64)] @ q
