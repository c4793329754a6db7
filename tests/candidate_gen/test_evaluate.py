"""Known-answer checks of the leave-one-out evaluation: ranks, masking, tie-breaking, history."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from candidate_gen.base import Backbone
from candidate_gen.evaluate import evaluate_backbone, heldout_ranks
from candidate_gen.split import leave_one_out

from .conftest import make_dataset


class FixedBackbone(Backbone):
    """Scores are given per item (d = 1); records the histories it was queried with."""

    name = "fixed"

    def __init__(self, scores: Sequence[float]):
        self._items = np.asarray(scores, dtype=np.float32)[:, None]
        self.calls: dict[int | None, list[int]] = {}

    def item_vectors(self) -> np.ndarray:
        return self._items

    def query(self, user, history):
        self.calls[user] = list(history)
        return np.ones(1, dtype=np.float32)


def _hand_split():
    """8 items; item i scores 8 - i, so the unmasked ranking is 0, 1, 2, ... 7.

    user 0: likes 0 (train), 3 (valid), 4 (test); dislikes 1 before the test
            -> unseen items ahead of 4 at test: 2 -> rank 1
    user 1: likes 6 (train), 5 (train), 7 (valid), 2 (test)
            -> ahead of 2: 0, 1 -> rank 2
    user 2: rates 0 with 3 (neither like nor dislike), likes 1 (valid), 0 is seen, likes 6 (test)
            -> ahead of 6: 2, 3, 4, 5 -> rank 4
    """
    rows = [
        (0, 0, 5, 10), (0, 1, 1, 11), (0, 3, 4, 12), (0, 4, 5, 13),
        (1, 6, 5, 10), (1, 5, 4, 11), (1, 7, 5, 12), (1, 2, 5, 13),
        (2, 0, 3, 10), (2, 1, 5, 11), (2, 6, 5, 12),
    ]  # fmt: skip
    return leave_one_out(make_dataset("hand", rows, n_users=3, n_items=8, fp="hand"))


def _expected(ranks, ks=(3, 5, 10)):
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(r < k for r in ranks) / len(ranks)
        out[f"NDCG@{k}"] = sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return out


def test_known_ranks_give_known_metrics():
    split = _hand_split()
    bb = FixedBackbone([8 - i for i in range(8)])
    users, ranks = heldout_ranks(bb, split, "test")
    assert users == [0, 1, 2] and ranks.tolist() == [1, 2, 4]
    result = evaluate_backbone(bb, split, "test")
    assert result["users"] == 3
    assert result["metrics"] == pytest.approx(_expected([1, 2, 4]))
    assert evaluate_backbone(bb, split, "test", ks=(1,))["metrics"] == {"HR@1": 0.0, "NDCG@1": 0.0}


def test_seen_items_are_masked_even_when_scored_highest():
    split = _hand_split()
    # seen items of user 0 at test (0, 1, 3) get the top scores; only item 2 remains ahead of 4
    bb = FixedBackbone([100, 99, 5, 98, 4, 3, 2, 1])
    _, ranks = heldout_ranks(bb, split, "test")
    assert ranks[0] == 1
    # without a mask user 0's item 4 would sit behind 0, 1, 3 and 2: the mask is what moves it up
    assert ranks[0] < int((bb.item_vectors()[:, 0] > 4).sum())


def test_valid_stage_masks_and_queries_with_what_came_before():
    split = _hand_split()
    bb = FixedBackbone([8 - i for i in range(8)])
    users, ranks = heldout_ranks(bb, split, "valid")
    # user 0 valid=3: seen {0, 1}, ahead: 2 -> 1; user 1 valid=7: seen {6, 5}, ahead 0..4 -> 5;
    # user 2 valid=1: seen {0} -> 0
    assert ranks.tolist() == [1, 5, 0]
    assert bb.calls == {0: [0], 1: [6, 5], 2: []}  # liked history only, oldest first
    heldout_ranks(bb, split, "test")
    assert bb.calls == {0: [0, 3], 1: [6, 5, 7], 2: [1]}  # the validation like is context at test


def test_ties_break_by_item_index_not_in_the_targets_favour():
    split = _hand_split()
    _, ranks = heldout_ranks(FixedBackbone([1.0] * 8), split, "test")
    # constant scores: rank = unseen items with a smaller index than the target
    assert ranks.tolist() == [1, 2, 4]


def test_bad_inputs_are_refused():
    split = _hand_split()
    with pytest.raises(ValueError, match="7 item vectors"):
        evaluate_backbone(FixedBackbone([1.0] * 7), split)
    with pytest.raises(ValueError, match="stage"):
        evaluate_backbone(FixedBackbone([1.0] * 8), split, stage="train")
