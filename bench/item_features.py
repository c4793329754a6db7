"""Item content as numbers (genres as vectors, release years), for the benches that ask
what content tells beyond a backbone or without one (bench.answer_loss,
bench.feature_fusion, bench.new_items_content)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from candidate_gen.data import Dataset

YEAR = re.compile(r"\((\d{4})\)\s*$")


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


def release_year(title: str) -> float:
    """The year of a title's trailing "(YYYY)", NaN where there is none."""
    m = YEAR.search(title)
    return float(m.group(1)) if m else float("nan")
