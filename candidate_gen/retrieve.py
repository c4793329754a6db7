"""Candidate generation: a backbone's query vector against a FAISS index of its items.

One class serves every backbone because each reduces to an inner product (see
``candidate_gen.base``): embedding models look the user up, SASRec encodes the history,
and the index does the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from candidate_gen.base import Backbone
from candidate_gen.index import ItemIndex, Kind
from candidate_gen.recency import RecencyRescorer


@dataclass(frozen=True)
class ScoredItem:
    item: int  # dataset item index
    score: float  # backbone score (inner product), or its blend with recency; higher is better


class CandidateGenerator:
    """Top-n unseen items for a user, with the backbone's scores; with ``recency``, the top-n
    re-ordered by the backbone's score blended with co-likes of the user's latest likes."""

    def __init__(self, backbone: Backbone, index: ItemIndex, recency: RecencyRescorer | None = None) -> None:
        self._name = getattr(backbone, "name", type(backbone).__name__)
        vectors = backbone.item_vectors()
        if index.n_items != vectors.shape[0] or index.dim != vectors.shape[1]:
            raise ValueError(f"index holds {index.n_items} x {index.dim} items but backbone {self._name!r} "
                             f"has {vectors.shape[0]} x {vectors.shape[1]}")
        if recency is not None and recency.co_likes.n_items != index.n_items:
            raise ValueError(f"co-likes cover {recency.co_likes.n_items} items but the index {index.n_items}")
        self.backbone = backbone
        self.index = index
        self.recency = recency if recency is not None and recency.config.active else None

    @classmethod
    def from_backbone(
        cls, backbone: Backbone, kind: Kind = "exact", *, threads: int | None = 1,
        recency: RecencyRescorer | None = None, **params: int | None
    ) -> CandidateGenerator:
        """Build the index over ``backbone.item_vectors()`` (see ``ItemIndex.build``)."""
        return cls(backbone, ItemIndex.build(backbone.item_vectors(), kind, threads=threads, **params), recency)

    @property
    def source(self) -> str:
        """Names what orders the candidates: the backbone, plus recency when on. Hybrid weights
        are chosen over one source's candidates and served only over the same kind (by name,
        as a retrained backbone keeps its name; the exact weight and window are in ``info``)."""
        return f"{self._name}+recency" if self.recency is not None else self._name

    @property
    def info(self) -> dict:
        """What shapes the candidates besides the backbone: empty with recency off."""
        return {"recency": {"weight": self.recency.config.weight, "window": self.recency.config.window}} \
            if self.recency is not None else {}

    @property
    def n_items(self) -> int:
        return self.index.n_items

    def candidates(
        self, user: int | None, history: Sequence[int], num_candidates: int, exclude: Collection[int] | None = None
    ) -> list[ScoredItem]:
        """The ``num_candidates`` best items not in ``exclude`` (default: the history), best first.

        Fewer come back only when fewer items are left unexcluded.
        """
        return self.candidates_many([user], [history], num_candidates, None if exclude is None else [exclude])[0]

    def candidates_many(
        self,
        users: Sequence[int | None],
        histories: Sequence[Sequence[int]],
        num_candidates: int,
        excludes: Sequence[Collection[int]] | None = None,
        *,
        threads: int | None = -1,
    ) -> list[list[ScoredItem]]:
        """``candidates`` for many users in one index search (offline evaluation, batch jobs).

        ``threads`` overrides the index's thread count for this search (None: all cores);
        -1 keeps the index's setting.
        """
        if len(users) != len(histories):
            raise ValueError(f"got {len(users)} users but {len(histories)} histories")
        if excludes is not None and len(excludes) != len(users):
            raise ValueError(f"got {len(users)} users but {len(excludes)} exclude sets")
        if not isinstance(num_candidates, int) or isinstance(num_candidates, bool) or num_candidates < 1:
            raise ValueError(f"num_candidates must be a positive integer, got {num_candidates!r}")
        if not users:
            return []
        for history in histories:
            self._check_items(history, "history")
        queries = np.stack([self._query(u, h) for u, h in zip(users, histories, strict=True)])
        if excludes is None:
            excludes = [set(h) for h in histories]
        ids, scores = self.index.search(queries, num_candidates, excludes, threads=threads)
        found = [[(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
                 for row_ids, row_scores in zip(ids, scores, strict=True)]
        return [self._ranked(row, history) for row, history in zip(found, histories, strict=True)]

    def _ranked(self, row: list[tuple[int, float]], history: Sequence[int]) -> list[ScoredItem]:
        if self.recency is None or not row:
            return [ScoredItem(i, s) for i, s in row]
        items = [i for i, _ in row]
        blended = self.recency.rescore(items, np.array([s for _, s in row]), history)
        order = np.lexsort((np.arange(len(items)), -blended))  # ties keep the backbone's order
        return [ScoredItem(items[k], float(blended[k])) for k in order]

    def score(self, user: int | None, history: Sequence[int], items: Sequence[int]) -> np.ndarray:
        """Backbone scores of client-supplied ``items`` (blended with recency when on), in their order."""
        self._check_items(history, "history")
        self._check_items(items, "items")
        scores = np.asarray(self.backbone.score(user, history, items), dtype=np.float32)
        if self.recency is None or not len(items):
            return scores
        return self.recency.rescore(items, scores, history).astype(np.float32)

    def _query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        q = np.asarray(self.backbone.query(user, history), dtype=np.float32)
        if q.shape != (self.index.dim,):
            raise ValueError(f"backbone {self._name!r} returned a query of shape {q.shape}, "
                             f"expected ({self.index.dim},)")
        if not np.isfinite(q).all():
            raise ValueError(f"backbone {self._name!r} returned a non-finite query for user "
                             f"{user!r} with {len(history)} history items")
        return q

    def _check_items(self, items: Sequence[int], what: str) -> None:
        bad = [i for i in items if not isinstance(i, int | np.integer) or not 0 <= i < self.n_items]
        if bad:
            raise ValueError(f"{what} contains item indices outside 0..{self.n_items - 1}: {bad[:5]}")
