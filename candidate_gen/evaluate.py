"""Full-ranking evaluation of a backbone with the paper's leave-one-out protocol.

For every user with a held-out like at ``stage``, the held-out item is ranked against all
items the user had not consumed before it (``UserSplit.seen(stage)`` is masked). The query
is built from the likes visible at that stage, oldest first. Ties are broken by item index
(as a stable sort would), so a constant scorer is not credited with rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from candidate_gen.base import Backbone
from candidate_gen.metrics import KS, summarize
from candidate_gen.split import Split

Stage = Literal["valid", "test"]


def liked_history(split: Split, user: int, stage: Stage) -> list[int]:
    """Liked items visible before ``stage``'s held-out event, oldest first."""
    return [e.item for e in split.users[user].context(stage) if e.liked]


def batch_queries(backbone: Backbone, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
    """(N, d) queries; uses the backbone's own ``query_batch`` when it has one (SASRec)."""
    batched = getattr(backbone, "query_batch", None)
    if batched is not None:
        q = batched(histories)
    else:
        d = backbone.item_vectors().shape[1]
        q = np.stack([backbone.query(u, h) for u, h in zip(users, histories)]) if users else np.zeros((0, d))
    q = np.asarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        raise ValueError(f"backbone {backbone.name!r} produced non-finite query vectors")
    return q


def heldout_ranks(backbone: Backbone, split: Split, stage: Stage = "test", chunk: int = 2048) -> tuple[list[int], np.ndarray]:
    """(users, ranks): 0-based rank of each user's held-out item among the unseen items."""
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
    users = split.eval_users(stage)
    items = np.asarray(backbone.item_vectors(), dtype=np.float32)  # (n_items, d)
    if items.shape[0] != split.dataset.n_items:
        ds = split.dataset
        raise ValueError(f"backbone has {items.shape[0]} item vectors, dataset {ds.name!r} has {ds.n_items} items")
    ranks = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(users), chunk):
        part = users[start : start + chunk]
        histories = [liked_history(split, u, stage) for u in part]
        scores = batch_queries(backbone, part, histories) @ items.T  # (n, n_items)
        ranks.append(_ranks(scores, split, part, stage))
    return users, np.concatenate(ranks)


def _ranks(scores: np.ndarray, split: Split, users: Sequence[int], stage: Stage) -> np.ndarray:
    targets = np.array([split.users[u].held_out(stage) for u in users], dtype=np.int64)  # (n,)
    r = np.arange(len(users))
    target_scores = scores[r, targets][:, None].copy()  # (n, 1)
    rows, cols = _seen_coords(split, users, stage)
    scores[rows, cols] = -np.inf
    scores[r, targets] = target_scores[:, 0]  # a re-consumed held-out item is still the one to find
    above = (scores > target_scores).sum(axis=1)
    item_idx = np.arange(scores.shape[1])[None, :]
    tied_before = ((scores == target_scores) & (item_idx < targets[:, None])).sum(axis=1)
    return (above + tied_before).astype(np.int64)


def _seen_coords(split: Split, users: Sequence[int], stage: Stage) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = [], []
    for r, u in enumerate(users):
        seen = split.users[u].seen(stage)
        rows.extend([r] * len(seen))
        cols.extend(seen)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def evaluate_backbone(backbone: Backbone, split: Split, stage: Stage = "test", ks: Sequence[int] = KS) -> dict:
    """{"users": N, "metrics": {"HR@k": ..., "NDCG@k": ...}} over every user held out at ``stage``."""
    users, ranks = heldout_ranks(backbone, split, stage)
    return {"users": len(users), "metrics": summarize([int(r) for r in ranks], ks)}
