"""bench.gated_fusion: the LLM reorders only users whose backbone top two are close."""

from __future__ import annotations

import math

import pytest

from bench.gated_fusion import backbone_gap, diff_matrix, gated_rank
from ranker.ensemble import EnsembleWeights
from training.evaluate import UserOutcome

LISTWISE = EnsembleWeights(pointwise=0, pairwise=0, listwise=1, backbone=0)


def _outcome(backbone_scores, user="1"):
    # the LLM puts the target "a" first; the backbone puts it second
    return UserOutcome(user_id=user, target="a", candidates=["b", "a", "c"], backbone_scores=backbone_scores,
                       mode_scores={"listwise": {"a": 1.0, "b": 0.0, "c": -1.0}})


def test_gate_opens_only_where_the_backbone_top_two_are_close():
    close, far = _outcome([2.1, 2.0, 0.0]), _outcome([9.0, 2.0, 0.0])
    assert backbone_gap(close) < 0.25 < backbone_gap(far)
    assert gated_rank(close, LISTWISE, tau=0.25) == 0  # the LLM's order
    assert gated_rank(far, LISTWISE, tau=0.25) == 1  # the backbone's order
    assert gated_rank(far, LISTWISE, tau=math.inf) == 0  # no gate: the plain hybrid
    missing = UserOutcome(user_id="2", target="z", candidates=["b", "a", "c"], backbone_scores=[3.0, 2.0, 1.0])
    assert gated_rank(missing, LISTWISE, tau=math.inf) is None


def test_diffs_are_per_user_against_the_backbone():
    users = [_outcome([2.1, 2.0, 0.0], "1"), _outcome([9.0, 2.0, 0.0], "2")]
    d = diff_matrix(users, [(LISTWISE, 0.25), (LISTWISE, math.inf)])
    gain = 1 - 1 / math.log2(3)  # NDCG@3: rank 1 instead of rank 2
    assert d[0].tolist() == pytest.approx([gain, 0.0]) and d[1].tolist() == pytest.approx([gain, gain])
