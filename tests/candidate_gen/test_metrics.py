"""HR@k and NDCG@k against hand-computed cases."""

import math

import pytest

from candidate_gen.metrics import hit_rate, ndcg, rank_of, summarize


def test_single_item_cases():
    assert ndcg(0, 3) == 1.0
    assert ndcg(1, 3) == pytest.approx(1 / math.log2(3))  # 0.6309
    assert ndcg(2, 3) == pytest.approx(0.5)
    assert ndcg(3, 3) == 0.0 and hit_rate(3, 3) == 0.0
    assert ndcg(None, 10) == 0.0 and hit_rate(None, 10) == 0.0
    assert hit_rate(4, 5) == 1.0


def test_summary_over_users():
    # ranks 0, 2, miss, 4 -> HR@3 = 2/4, NDCG@3 = (1 + 0.5)/4; HR@5 = 3/4, NDCG@5 adds 1/log2(6)
    out = summarize([0, 2, None, 4], ks=(3, 5))
    assert out["HR@3"] == pytest.approx(0.5)
    assert out["NDCG@3"] == pytest.approx(1.5 / 4)
    assert out["HR@5"] == pytest.approx(0.75)
    assert out["NDCG@5"] == pytest.approx((1.5 + 1 / math.log2(6)) / 4)


def test_rank_of_and_empty():
    assert rank_of(7, [3, 7, 9]) == 1 and rank_of(8, [3, 7]) is None
    with pytest.raises(ValueError):
        summarize([])
