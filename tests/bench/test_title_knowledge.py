"""bench.title_knowledge: similarity to the likes, the feature rows and the alone-vs-random row."""

from __future__ import annotations

import numpy as np

from bench.feature_fusion import Cases
from bench.title_knowledge import WINDOWS, alone, feature_fn, similarity_to_likes


def unit(rows: list[list[float]]) -> np.ndarray:
    v = np.array(rows, dtype=float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


VECTORS = unit([[1, 0], [0, 1], [1, 0.1], [0.1, 1]])


def test_similarity_follows_the_window_of_latest_likes() -> None:
    history = [0, 0, 1]  # latest like last: item 1
    everything = similarity_to_likes(VECTORS, np.array([2, 3]), history, None)
    latest = similarity_to_likes(VECTORS, np.array([2, 3]), history, 1)
    assert everything[0] > everything[1]  # two of three likes point like item 2
    assert latest[1] > latest[0]  # the last like points like item 3
    assert np.allclose(latest, VECTORS[[2, 3]] @ VECTORS[1])


def test_no_likes_give_no_signal() -> None:
    assert np.all(similarity_to_likes(VECTORS, np.array([2, 3]), [], 5) == 0)


def test_feature_rows_are_layers_times_windows() -> None:
    other_layer = unit([[1, 0], [0, 1], [0, 1], [1, 0]])  # items 2 and 3 swap places
    rows = feature_fn({8: VECTORS, 16: other_layer})(np.array([2, 3]), [0])
    assert rows.shape == (2 * len(WINDOWS), 2)
    assert rows[0][0] > rows[0][1] and rows[len(WINDOWS)][1] > rows[len(WINDOWS)][0]


def test_a_feature_that_points_at_the_target_beats_random_orders() -> None:
    users, n = 200, 10
    rng = np.random.default_rng(0)
    target = rng.integers(0, n, users)
    oracle = np.zeros((users, 1, n))
    oracle[np.arange(users), 0, target] = 1.0
    cases = Cases(target_pos=target, backbone_z=np.zeros((users, n)), features=oracle)
    row = alone(cases, 0)
    assert row["ndcg"] == 1.0  # the target is always first
    assert 0.15 < row["random"] < 0.30  # a random order of 10: about 0.21
    assert row["minus_random"]["ci"][0] > 0.6
