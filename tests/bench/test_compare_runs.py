"""bench.compare_runs: two evaluation caches compared per user."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench.compare_runs import compare, main, read_outcomes
from ranker.ensemble import EnsembleWeights
from training.evaluate import UserOutcome


def _outcome(user, listwise):
    return UserOutcome(user_id=user, target="a", candidates=["b", "a", "c"], backbone_scores=[3.0, 2.0, 1.0],
                       mode_scores={"listwise": dict(zip(["b", "a", "c"], listwise))})


def test_paired_difference_per_row(tmp_path):
    a = [_outcome("1", [1, 0, -1]), _outcome("2", [1, 0, -1])]  # listwise keeps "a" second
    b = [_outcome("1", [0, 1, -1]), _outcome("2", [1, 0, -1])]  # user 1: "a" first
    rows = compare(a, b, EnsembleWeights(pointwise=0, pairwise=0, listwise=1, backbone=0))
    second = 1 / 1.584962500721156  # NDCG@3 of a hit at rank 2 = 1/log2(3)
    assert rows["listwise"]["NDCG@3"]["a"] == pytest.approx(second)
    assert rows["listwise"]["NDCG@3"]["b"] == pytest.approx((1 + second) / 2)
    assert rows["listwise"]["NDCG@3"]["diff"] == pytest.approx((1 - second) / 2)
    assert rows["backbone"]["NDCG@3"]["diff"] == 0
    for path, outcomes in ((tmp_path / "a.jsonl", a), (tmp_path / "b.jsonl", b)):
        path.write_text("".join(json.dumps(asdict(o)) + "\n" for o in outcomes))
    assert read_outcomes(tmp_path / "a.jsonl")["1"] == a[0]
    main([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(tmp_path / "out.json")])
    assert json.loads((tmp_path / "out.json").read_text())["users"] == 2


def test_different_candidates_are_refused():
    a = [_outcome("1", [1, 0, -1])]
    b = [UserOutcome(user_id="1", target="a", candidates=["a", "b", "c"], backbone_scores=[3.0, 2.0, 1.0])]
    with pytest.raises(SystemExit, match="not a paired comparison"):
        compare(a, b, EnsembleWeights())


def test_each_run_at_its_own_weights():
    a = [_outcome("1", [0, 1, -1])]  # listwise puts the target first, the backbone second
    both_listwise = compare(a, a, EnsembleWeights(pointwise=0, pairwise=0, listwise=1, backbone=0))
    assert both_listwise["hybrid"]["NDCG@3"]["diff"] == 0
    rows = compare(a, a, EnsembleWeights(pointwise=0, pairwise=0, listwise=1, backbone=0),
                   weights_b=EnsembleWeights(pointwise=0, pairwise=0, listwise=0, backbone=1))
    assert rows["hybrid"]["NDCG@3"]["a"] == pytest.approx(1.0)
    assert rows["hybrid"]["NDCG@3"]["diff"] == pytest.approx(1 / 1.584962500721156 - 1)
    assert rows["listwise"]["NDCG@3"]["diff"] == 0  # mode rows do not depend on the weights
