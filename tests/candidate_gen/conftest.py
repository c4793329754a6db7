"""Small synthetic datasets with planted structure, where the right answer is obvious.

``planted``: two user groups, each liking only its own block of items, with a
popularity skew inside each block (Zipf-like weights). A backbone that learns the groups
ranks the held-out like among the ~20 unseen items of the user's block instead of ~50
unseen items overall; pop profits from the skew alone. Every user also dislikes two items
of the other block (masked at evaluation, never training positives). Two edge users: one
with only two likes (no training likes: unknown to MF/LightGCN) and one with no likes.
"""

from __future__ import annotations

import numpy as np
import pytest

from candidate_gen.data import Dataset
from candidate_gen.split import Split, leave_one_out
from tests.datasets import dataset_from_rows

N_GROUP_USERS = 40  # per group
BLOCK = 30  # items per group
LIKES = 10  # per regular user: 8 train, 1 valid, 1 test


def make_dataset(name: str, rows: list[tuple[int, int, float, int]], n_users: int, n_items: int, fp: str) -> Dataset:
    return dataset_from_rows(rows, n_users, n_items, name=name, fingerprint=fp)


def planted_dataset(seed: int = 0, name: str = "planted") -> Dataset:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, BLOCK + 1)
    weights /= weights.sum()
    rows = []
    for u in range(2 * N_GROUP_USERS):
        own, other = (u % 2) * BLOCK, (1 - u % 2) * BLOCK
        liked = own + rng.choice(BLOCK, size=LIKES, replace=False, p=weights)
        disliked = other + rng.choice(BLOCK, size=2, replace=False)
        events = [(int(it), float(rng.choice([4, 5]))) for it in liked] + [(int(it), 1.0) for it in disliked]
        for t, k in enumerate(rng.permutation(len(events))):  # random time order; the last like is the test
            rows.append((u, events[k][0], events[k][1], 1_000_000 + 60 * t))
    newbie, grump = 2 * N_GROUP_USERS, 2 * N_GROUP_USERS + 1
    rows += [(newbie, 0, 5.0, 2_000_000), (newbie, 1, 5.0, 2_000_100)]  # valid + test, no training likes
    rows += [(grump, BLOCK, 1.0, 2_000_000)]  # no likes at all
    return make_dataset(name, rows, grump + 1, 2 * BLOCK, f"synthetic-{name}-{seed}")


def random_ndcg10(split: Split, stage: str = "test") -> float:
    """Expected NDCG@10 of a uniformly random ranking of each user's unseen items."""
    gains = 1.0 / np.log2(np.arange(2, 12))
    out = []
    for u in split.eval_users(stage):
        n = split.dataset.n_items - len(split.users[u].seen(stage) - {split.users[u].held_out(stage)})
        out.append(gains[: min(10, n)].sum() / n)
    return float(np.mean(out))


# tiny-data settings: few, larger steps so each model trains in about a second
TINY = {
    "pop": {},
    "mf": {"emb_dim": 16, "lr": 0.05, "batch_size": 128, "epochs": 40, "eval_every": 5, "patience": 3},
    "lightgcn": {"emb_dim": 16, "lr": 0.05, "batch_size": 128, "epochs": 40, "eval_every": 5, "patience": 3},
    "sasrec": {"emb_dim": 16, "lr": 0.01, "batch_size": 32, "epochs": 40, "eval_every": 5, "patience": 3, "max_len": 10},
}


@pytest.fixture(scope="session")
def planted() -> Split:
    return leave_one_out(planted_dataset())


@pytest.fixture(scope="session")
def trained(planted):
    """Every backbone trained once on ``planted``: {model: (backbone, metrics)}."""
    from candidate_gen.train import train_backbone

    return {m: train_backbone(planted, m, cfg, seed=0, progress=False) for m, cfg in TINY.items()}
