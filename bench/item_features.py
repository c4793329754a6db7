"""Item genres as vectors, for the benches that ask what genres tell beyond a backbone
(bench.answer_loss, bench.feature_fusion)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from candidate_gen.data import Dataset


def genre_matrix(ds: Dataset) -> np.ndarray:
    """(items, genres) 0/1, one column per genre in the dataset; zeros when it has none."""
    genres = ds.genres or [()] * len(ds.item_ids)
    names = sorted({g for gs in genres for g in gs})
    col = {g: k for k, g in enumerate(names)}
    out = np.zeros((len(ds.item_ids), max(len(names), 1)))
    for item, gs in enumerate(genres):
        out[item, [col[g] for g in gs]] = 1.0
    return out


def genre_overlap(genres: np.ndarray, liked: Sequence[int], items: Sequence[int]) -> np.ndarray:
    """Per item, the cosine of its genres with the genre counts of ``liked``; 0 where either
    is empty."""
    profile = genres[list(liked)].sum(axis=0)
    rows = genres[list(items)]
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(profile)
    return np.divide(rows @ profile, norms, out=np.zeros(len(rows)), where=norms > 0)
