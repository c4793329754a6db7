"""Ranking metrics for a single relevant item (the paper's protocol), as pure functions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

KS = (3, 5, 10)


def hit_rate(rank: int | None, k: int) -> float:
    """1 if the relevant item sits at 0-based ``rank`` < k; a missing item (None) is a miss."""
    return 1.0 if rank is not None and rank < k else 0.0


def ndcg(rank: int | None, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k, else 0."""
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


def rank_of(item: int, ranking: Sequence[int]) -> int | None:
    try:
        return list(ranking).index(item)
    except ValueError:
        return None


def summarize(ranks: Iterable[int | None], ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean HR@k and NDCG@k over users, keyed 'HR@3', 'NDCG@3', ..."""
    ranks = list(ranks)
    if not ranks:
        raise ValueError("no users to evaluate")
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = sum(hit_rate(r, k) for r in ranks) / len(ranks)
        out[f"NDCG@{k}"] = sum(ndcg(r, k) for r in ranks) / len(ranks)
    return out
