"""candidate_gen.recency_choice: recency is switched on where the latest like predicts the
next one, and stays off where co-likes carry nothing."""

from __future__ import annotations

import numpy as np
import pytest

from candidate_gen.pop import PopBackbone
from candidate_gen.recency import CoLikes, RecencyConfig, RecencyRescorer
from candidate_gen.recency_choice import choose_recency, stage_candidates, target_ranks
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import leave_one_out
from tests.datasets import dataset_from_rows

TRIPLES = 12  # items 3t, 3t+1, 3t+2 are always liked together, one after another
USERS = 150


def triples_split(structured: bool, seed: int = 0):
    """``structured``: each user likes 3 random triples, each triple's items back to back (so
    the validation like follows its triple's first item); else nine random items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(USERS):
        if structured:
            items = [3 * t + k for t in rng.choice(TRIPLES, size=3, replace=False) for k in range(3)]
        else:
            items = rng.choice(3 * TRIPLES, size=9, replace=False).tolist()
        rows += [(u, int(i), 5.0, 1_000 + 10 * n) for n, i in enumerate(items)]
    split = leave_one_out(dataset_from_rows(rows, USERS, 3 * TRIPLES, name="triples"))
    users, items = split.train_interactions()
    generator = CandidateGenerator.from_backbone(PopBackbone.fit(items, split.dataset.n_items), "exact")
    return split, generator, CoLikes.from_likes(users, items, split.dataset.n_items)


def test_target_ranks_keep_list_order_on_ties_and_mark_misses() -> None:
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert target_ranks(scores, np.array([1, 2, -1])).tolist() == [1, 1, -1]


def test_recency_is_chosen_where_the_latest_like_predicts_the_next() -> None:
    split, generator, co_likes = triples_split(structured=True)
    choice = choose_recency(generator, split, co_likes, num_candidates=20)
    ev = choice.evidence
    assert choice.config.active and ev["passes"]
    assert ev["best"]["diff"] > 0.1 and ev["best"]["ci"][0] > 0 and ev["cross_validated"]["ci"][0] > 0
    assert choice.to_dict()["weight"] == choice.config.weight > 0
    verdict = f"weight {choice.config.weight:g}, window {choice.config.window}"
    assert choice.describe().startswith(f"{verdict} (validation NDCG@3 +")


def test_recency_stays_off_where_co_likes_carry_nothing() -> None:
    split, generator, co_likes = triples_split(structured=False)
    choice = choose_recency(generator, split, co_likes, num_candidates=20)
    assert not choice.config.active and not choice.evidence["passes"]
    assert choice.config == RecencyConfig() and choice.describe().startswith("off (validation NDCG@3 ")


def test_choosing_over_an_already_reordered_generator_is_refused() -> None:
    split, generator, co_likes = triples_split(structured=True)
    reordered = CandidateGenerator(generator.backbone, generator.index,
                                   RecencyRescorer(co_likes, RecencyConfig(weight=1.0)))
    with pytest.raises(ValueError, match="backbone's own order"):
        choose_recency(reordered, split, co_likes)


def test_test_users_measure_the_chosen_config_only() -> None:
    split, generator, co_likes = triples_split(structured=True)
    choice = choose_recency(generator, split, co_likes, num_candidates=20)
    test = stage_candidates(generator, split, "test", num_candidates=20)
    gains = test.gains(co_likes, choice.config)
    assert gains.shape == (USERS,) and gains.mean() > 0.1  # the test like follows its triple's second item
    assert np.all(test.gains(co_likes, RecencyConfig()) == 0)
