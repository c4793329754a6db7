"""Hand-made Dataset objects for tests: one constructor, so every synthetic dataset is built
the way the loaders build real ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from candidate_gen.data import Dataset


def dataset_from_rows(
    rows: Sequence[tuple[int, int, float, int]],
    n_users: int,
    n_items: int,
    *,
    name: str = "synthetic",
    titles: Sequence[str] | None = None,
    fingerprint: str | None = None,
) -> Dataset:
    """A Dataset from (user index, item index, rating, timestamp) rows, in file order;
    ids are 'u<i>' / 'i<j>', titles 'Item <j>' unless given."""
    u, i, r, t = (np.array(c) for c in zip(*rows))
    return Dataset(
        name=name,
        user_ids=[f"u{k}" for k in range(n_users)],
        item_ids=[f"i{k}" for k in range(n_items)],
        titles=list(titles) if titles is not None else [f"Item {k}" for k in range(n_items)],
        users=u.astype(np.int64),
        items=i.astype(np.int64),
        ratings=r.astype(np.float32),
        timestamps=t.astype(np.int64),
        fingerprint=fingerprint or name,
    )
