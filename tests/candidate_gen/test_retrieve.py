from collections.abc import Sequence

import numpy as np
import pytest

from candidate_gen.base import Backbone
from candidate_gen.index import ItemIndex
from candidate_gen.retrieve import CandidateGenerator, ScoredItem

# Six items on a line in 2-D: for user 0 (vector [1, 0]) the scores are the x coordinates,
# so the ranking is 5 > 4 > ... > 0; user 1 ([0, 1]) ranks by y, which reverses it.
ITEMS = np.array([[0, 5], [1, 4], [2, 3], [3, 2], [4, 1], [5, 0]], dtype=np.float32)
USERS = np.array([[1, 0], [0, 1]], dtype=np.float32)


class FixedBackbone(Backbone):
    """Embedding-model test double: trained user vectors, mean of history for cold users."""

    name = "fixed"

    def item_vectors(self) -> np.ndarray:
        return ITEMS

    def query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        if user is not None:
            return USERS[user]
        if not history:
            return np.full(2, np.nan, dtype=np.float32)  # what a careless mean of nothing gives
        return ITEMS[list(history)].mean(axis=0)


class LastItemBackbone(FixedBackbone):
    """Sequential-model test double: the query is the latest history item's vector."""

    name = "last-item"

    def query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        return ITEMS[history[-1]]


@pytest.fixture(params=["exact", "hnsw", "ivf"])
def generator(request):
    params = {"nlist": 2} if request.param == "ivf" else {}
    return CandidateGenerator.from_backbone(FixedBackbone(), request.param, **params)


def test_top_n_unseen_items_with_scores(generator):
    got = generator.candidates(0, [5, 3], num_candidates=3)
    assert got == [ScoredItem(4, 4.0), ScoredItem(2, 2.0), ScoredItem(1, 1.0)]
    assert generator.candidates(1, [0], num_candidates=2) == [ScoredItem(1, 4.0), ScoredItem(2, 3.0)]


def test_explicit_exclude_replaces_history(generator):
    got = generator.candidates(0, [5], num_candidates=2, exclude={4})
    assert [c.item for c in got] == [5, 3]


def test_cold_user_queries_from_history(generator):
    # mean of items 0 and 1 is [0.5, 4.5]: favours high y, so item 2 then 3
    got = generator.candidates(None, [0, 1], num_candidates=2)
    assert [c.item for c in got] == [2, 3]
    assert got[0].score == pytest.approx(0.5 * 2 + 4.5 * 3)


def test_sequential_backbone_follows_history_order():
    gen = CandidateGenerator(LastItemBackbone(), ItemIndex.build(ITEMS))
    # same items, different latest item -> different neighbours
    assert [c.item for c in gen.candidates(7, [0, 5], num_candidates=1)] == [4]
    assert [c.item for c in gen.candidates(7, [5, 0], num_candidates=1)] == [1]


def test_fewer_candidates_than_asked_when_catalog_runs_out(generator):
    got = generator.candidates(0, [0, 1, 2, 3], num_candidates=5)
    assert [c.item for c in got] == [5, 4]


def test_candidates_many_matches_one_by_one(generator):
    users, histories = [0, 1, None], [[5], [0, 2], [0, 1]]
    many = generator.candidates_many(users, histories, num_candidates=3, threads=None)
    assert many == [generator.candidates(u, h, num_candidates=3) for u, h in zip(users, histories)]
    assert generator.candidates_many([], [], num_candidates=3) == []


def test_score_delegates_to_backbone(generator):
    scores = generator.score(1, [0], [5, 0, 3])
    np.testing.assert_allclose(scores, [0.0, 5.0, 2.0])


def test_index_must_match_backbone():
    with pytest.raises(ValueError, match="index holds 3 x 2 items but backbone 'fixed' has 6 x 2"):
        CandidateGenerator(FixedBackbone(), ItemIndex.build(ITEMS[:3]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g.candidates(0, [9], num_candidates=2), r"history contains item indices outside 0\.\.5: \[9\]"),
        (lambda g: g.score(0, [], [1, -1]), r"items contains item indices outside 0\.\.5: \[-1\]"),
        (lambda g: g.candidates(0, [], num_candidates=0), "num_candidates must be a positive integer"),
        (lambda g: g.candidates_many([0, 1], [[]], num_candidates=2), "2 users but 1 histories"),
        (lambda g: g.candidates(None, [], num_candidates=2), "non-finite query"),
    ],
)
def test_bad_input_is_named(call, message):
    gen = CandidateGenerator.from_backbone(FixedBackbone())
    with pytest.raises(ValueError, match=message):
        call(gen)
