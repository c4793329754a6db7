import json

import numpy as np
import pytest

from candidate_gen.base import Backbone
from candidate_gen.data import Dataset
from candidate_gen.split import leave_one_out
from training.sampling import (
    SamplingConfig,
    cluster_allocation,
    cluster_draws,
    importance_draws,
    importance_probabilities,
    kmeans,
    load_sampled_counts,
    penalized_draw,
    repetition_weights,
    sample,
    sample_users,
    save_sampled,
    train_like_counts,
    user_vectors,
)


class _TableBackbone(Backbone):
    """A backbone whose user vectors are a given table (row = dataset user index)."""

    name = "table"

    def __init__(self, users: np.ndarray, n_items: int = 4):
        self._u = users.astype(np.float32)
        self._i = np.eye(n_items, users.shape[1], dtype=np.float32)

    def item_vectors(self):
        return self._i

    def query(self, user, history):
        return self._u[user]

    def user_embeddings(self):
        return self._u


def _dataset(likes_per_user: list[int]) -> Dataset:
    """User u rates likes_per_user[u] items 5; a user with no like rates one item 1."""
    rows = []
    for u, n in enumerate(likes_per_user):
        if n == 0:
            rows.append((u, 0, 1.0, 0))
        for j in range(n):
            rows.append((u, j, 5.0, j))
    arr = np.array(rows)
    n_items = max(max(likes_per_user), 1)
    return Dataset(
        name="synthetic",
        user_ids=[f"u{u}" for u in range(len(likes_per_user))],
        item_ids=[f"i{i}" for i in range(n_items)],
        titles=[f"Item {i}" for i in range(n_items)],
        users=arr[:, 0].astype(np.int64),
        items=arr[:, 1].astype(np.int64),
        ratings=arr[:, 2].astype(np.float32),
        timestamps=arr[:, 3].astype(np.int64),
        fingerprint="fp-synthetic",
    )


def test_importance_probabilities_follow_log1p_exactly():
    n = np.array([1, 2, 4, 9, 30])
    p = importance_probabilities(n)
    expected = np.log(1 + n) / np.log(1 + n).sum()
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert p[0] > 0  # the reference's ln(1) = 0 would exclude a one-like user


def test_importance_draws_empirical_frequencies():
    users, n = np.array([10, 11, 12, 13]), np.array([1, 3, 7, 20])
    drawn = importance_draws(users, n, 200_000, np.random.default_rng(0))
    freq = np.array([(drawn == u).mean() for u in users])
    np.testing.assert_allclose(freq, importance_probabilities(n), atol=0.005)


def test_importance_rejects_ineligible_user():
    with pytest.raises(ValueError, match="at least one training like"):
        importance_probabilities(np.array([3, 0]))


def test_cluster_allocation_is_rounded_share_of_m():
    labels = np.repeat([0, 1, 2, 3], [50, 30, 13, 7])
    assert cluster_allocation(labels, 60) == {0: 30, 1: 18, 2: round(13 / 100 * 60), 3: round(7 / 100 * 60)}
    drawn = cluster_draws(np.arange(100), labels, 60, np.random.default_rng(1))
    per_cluster = np.bincount(labels[drawn], minlength=4)
    assert per_cluster.tolist() == [30, 18, 8, 4]


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng(3)
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    truth = np.repeat([0, 1, 2], [40, 25, 15])
    x = centers[truth] + rng.normal(scale=0.5, size=(80, 2))
    labels = kmeans(x, 3, np.random.default_rng(0))
    # same partition up to renaming: each true blob maps to exactly one label
    assert all(len(set(labels[truth == t])) == 1 for t in range(3))
    assert len(set(labels)) == 3


def test_kmeans_with_duplicate_rows_caps_k():
    labels = kmeans(np.ones((20, 4)), 10, np.random.default_rng(0))
    assert set(labels) == {0}


def test_repetition_weights_exact():
    w = repetition_weights(np.array([7, 7, 7, 3, 5, 5]), 0.95)
    np.testing.assert_allclose(w, [0.95**2] * 3 + [1.0] + [0.95] * 2)


def test_repetition_penalty_lowers_repeats():
    pool = np.concatenate([np.zeros(60, dtype=np.int64), np.arange(1, 61)])  # user 0 fills half the pool
    with_pen, without = [], []
    for seed in range(20):
        with_pen.append((penalized_draw(pool, 80, 0.95, np.random.default_rng(seed)) == 0).sum())
        without.append((penalized_draw(pool, 80, 1.0, np.random.default_rng(seed)) == 0).sum())
    assert np.mean(with_pen) < np.mean(without) - 10


def test_sample_is_seeded_and_budgeted():
    users = np.arange(200)
    n_likes = np.random.default_rng(0).integers(1, 50, size=200)
    emb = np.random.default_rng(1).normal(size=(200, 8))
    cfg = SamplingConfig(budget=300)
    a, b = sample(users, n_likes, emb, cfg, seed=5), sample(users, n_likes, emb, cfg, seed=5)
    c = sample(users, n_likes, emb, cfg, seed=6)
    assert len(a.users) == 300
    assert np.array_equal(a.users, b.users)
    assert not np.array_equal(a.users, c.users)
    assert sum(a.counts.values()) == 300
    assert a.stats["pool_size"] >= 300


def test_uniform_ablation_same_budget_roughly_flat():
    users, n_likes = np.arange(20), np.array([1] * 10 + [100] * 10)
    s = sample(users, n_likes, None, SamplingConfig(method="uniform", budget=40_000), seed=0)
    assert len(s.users) == 40_000
    freq = np.bincount(s.users, minlength=20) / 40_000
    np.testing.assert_allclose(freq, 1 / 20, atol=0.006)  # ignores like counts, unlike importance


def test_sample_users_only_eligible_and_checks_mapping(tmp_path):
    ds = _dataset([5, 0, 2, 8, 1, 3])  # users 1, 2, 4 keep no training like after the split
    split = leave_one_out(ds)
    users, n = train_like_counts(split)
    assert users.tolist() == [0, 3, 5] and n.tolist() == [3, 6, 1]  # two likes are held out per user
    emb = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)
    bb = _TableBackbone(emb)
    np.testing.assert_array_equal(user_vectors(bb, split, [3, 0]), emb[[3, 0]])
    with pytest.raises(ValueError, match="user index order"):
        user_vectors(bb, split, [0], backbone_user_ids=list(reversed(ds.user_ids)))
    with pytest.raises(ValueError, match="user rows"):
        user_vectors(_TableBackbone(emb[:4]), split, [0])
    s = sample_users(split, SamplingConfig(budget=50, n_clusters=2), seed=0, backbone=bb, backbone_user_ids=ds.user_ids)
    assert set(s.counts) <= set(users.tolist())
    path = save_sampled(s, split, tmp_path / "sampled.json")
    doc = json.loads(path.read_text())
    assert doc["n_draws"] == 50 and sum(doc["counts"].values()) == 50
    assert load_sampled_counts(path, split) == s.counts


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="penalty"):
        SamplingConfig(penalty=0.0)
    with pytest.raises(ValueError, match="method"):
        SamplingConfig(method="random")  # type: ignore[arg-type]
