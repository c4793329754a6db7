"""candidate_gen.recency: co-likes, the blend, and the generator re-ordering its top-N."""

import math

import numpy as np
import pytest

from candidate_gen.recency import CoLikes, RecencyConfig, RecencyRescorer, blend
from candidate_gen.retrieve import CandidateGenerator, ScoredItem
from tests.candidate_gen.test_retrieve import FixedBackbone

# users 0-3 liking items 0-5: item 1 is co-liked with item 0 by users 0 and 1; item 2 with
# item 5 by user 3 only; item 4 by nobody else.
LIKES = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 3), (3, 2), (3, 5), (2, 4)]


def co_likes() -> CoLikes:
    users, items = (np.array(c) for c in zip(*LIKES))
    return CoLikes.from_likes(users, items, n_items=6)


def test_similarity_is_the_cosine_of_like_vectors() -> None:
    c = co_likes()
    assert math.isclose(c.similarity(0, 1), 1.0)  # both liked by users 0 and 1 exactly
    assert math.isclose(c.similarity(2, 5), 1 / math.sqrt(2 * 1))  # item 2: users 1, 3; item 5: user 3
    assert c.similarity(4, 0) == 0.0
    assert c.similarity(0, 2) == c.similarity(2, 0)


def test_recent_similarity_reads_only_the_latest_likes() -> None:
    c = co_likes()
    history = [0, 5]  # oldest first: item 5 is the latest like
    assert np.allclose(c.recent_similarity([1, 2], history, window=1), [0.0, 1 / math.sqrt(2)])
    assert np.allclose(c.recent_similarity([1, 2], history, window=2),
                       [(1.0 + 0.0) / 2, (c.similarity(2, 0) + 1 / math.sqrt(2)) / 2])
    assert np.all(c.recent_similarity([1, 2], [], window=2) == 0)


def test_blend_without_weight_or_signal_keeps_the_backbone_order() -> None:
    scores = np.array([3.0, 2.0, 1.0])
    assert np.argsort(-blend(scores, np.array([0.0, 0.0, 0.9]), 0.0)).tolist() == [0, 1, 2]
    assert np.argsort(-blend(scores, np.zeros(3), 5.0)).tolist() == [0, 1, 2]  # constant similarity: no information
    assert np.argsort(-blend(scores, np.array([0.0, 0.0, 0.9]), 2.0)).tolist() == [2, 0, 1]


def test_config_refuses_negative_weights_and_empty_windows() -> None:
    with pytest.raises(ValueError, match="weight"):
        RecencyConfig(weight=-0.5)
    with pytest.raises(ValueError, match="weight"):
        RecencyConfig(weight=float("nan"))
    with pytest.raises(ValueError, match="window"):
        RecencyConfig(weight=1.0, window=0)
    assert not RecencyConfig().active


def test_generator_reorders_its_top_n_by_the_blend_and_blends_given_items_too() -> None:
    plain = CandidateGenerator.from_backbone(FixedBackbone(), "exact")
    rescorer = RecencyRescorer(co_likes(), RecencyConfig(weight=3.0, window=1))
    recency = CandidateGenerator.from_backbone(FixedBackbone(), "exact", recency=rescorer)
    # user 0 ranks by x: 4 > 2 > 1 once 5, 3 and 0 are seen; the latest like (0) is co-liked
    # fully with 1, half with 2, not with 4
    before = plain.candidates(0, [5, 3, 0], num_candidates=3)
    after = recency.candidates(0, [5, 3, 0], num_candidates=3)
    assert [s.item for s in before] == [4, 2, 1]
    assert [s.item for s in after] == [1, 2, 4]
    expected = blend(np.array([4.0, 2.0, 1.0]), np.array([0.0, 0.5, 1.0]), 3.0)
    assert after == [ScoredItem(1, expected[2]), ScoredItem(2, expected[1]), ScoredItem(4, expected[0])]
    assert np.allclose(recency.score(0, [5, 3, 0], [4, 2, 1]), expected)
    assert recency.info == {"recency": {"weight": 3.0, "window": 1}} and plain.info == {}
    assert plain.source == "fixed" and recency.source == "fixed+recency"
    # the same rows through the batched path
    assert recency.candidates_many([0], [[5, 3, 0]], 3)[0] == after


def test_generator_without_an_active_rescorer_is_the_plain_one() -> None:
    off = CandidateGenerator.from_backbone(FixedBackbone(), "exact",
                                           recency=RecencyRescorer(co_likes(), RecencyConfig(weight=0.0)))
    assert off.recency is None and off.info == {}
    with pytest.raises(ValueError, match="co-likes cover 2 items"):
        CandidateGenerator.from_backbone(FixedBackbone(), "exact", recency=RecencyRescorer(
            CoLikes.from_likes(np.array([0]), np.array([1]), n_items=2), RecencyConfig(weight=1.0)))
