"""Evaluation metrics and hybrid-weight selection on hand-built outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranker.ensemble import EnsembleWeights
from training.evaluate import UserOutcome, hybrid_ranking, report, row_ranks
from training.report import bootstrap_ci, markdown_table
from training.weights import choose_weights, weight_grid


def outcome(target, pointwise=None, listwise=None, cands=("a", "b", "c")):
    scores = {}
    if pointwise:
        scores["pointwise"] = dict(zip(cands, pointwise))
    if listwise:
        scores["listwise"] = dict(zip(cands, listwise))
    return UserOutcome(user_id="u", target=target, candidates=list(cands),
                       backbone_scores=[3.0, 2.0, 1.0], mode_scores=scores)


def test_rows_on_hand_built_users():
    users = [
        outcome("c", pointwise=[-1, 0, 1]),  # backbone rank 2, pointwise rank 0
        outcome("a", pointwise=[1, 0, -1]),  # both rank 0
        UserOutcome("v", "zz", ["a", "b", "c"], [3, 2, 1]),  # target not a candidate: a miss everywhere
    ]
    ranks = row_ranks(users, EnsembleWeights(pointwise=1, pairwise=0, listwise=0, backbone=0))
    assert ranks["backbone"] == [2, 0, None]
    assert ranks["pointwise"] == [0, 0, None]
    assert ranks["hybrid"] == [0, 0, None]
    assert ranks["listwise"] == [2, 0, None]  # a mode that did not run keeps the backbone order
    rows = report(users, EnsembleWeights(pointwise=1, pairwise=0, listwise=0, backbone=0))["rows"]
    assert rows["backbone"]["NDCG@3"] == pytest.approx((0.5 + 1.0) / 3)
    assert rows["pointwise"]["HR@3"] == pytest.approx(2 / 3)


def test_hybrid_uses_weights_and_backbone_prior():
    o = outcome("c", pointwise=[-1, 0, 1], listwise=[1, 0, -1])
    # modes cancel out; the backbone prior decides
    assert hybrid_ranking(o, EnsembleWeights(1, 0, 1, backbone=0.3))[0] == "a"
    assert hybrid_ranking(o, EnsembleWeights(1, 0, 0, backbone=0))[0] == "c"


def test_weight_selection_prefers_the_informative_mode():
    # pointwise always puts the target first, listwise always last
    users = [outcome(t, pointwise=[1 if c == t else 0 for c in "abc"], listwise=[0 if c == t else 1 for c in "abc"])
             for t in "abcabc"]
    best, table = choose_weights(users)
    assert best.pointwise > best.listwise
    assert table[0]["NDCG@3"] == pytest.approx(1.0)
    assert all(math.isclose(w.pointwise + w.pairwise + w.listwise, 1.0) for w in weight_grid())


def test_bootstrap_interval_brackets_the_mean_and_degenerates_on_constants():
    values = np.array([0.0, 1.0] * 50)
    lo, hi = bootstrap_ci(values, seed=1)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert bootstrap_ci(np.ones(20)) == (1.0, 1.0)


def test_markdown_table_has_every_row():
    rows = report([outcome("a", pointwise=[1, 0, -1])], EnsembleWeights())["rows"]
    md = markdown_table(rows)
    assert sum(line.startswith("| ") for line in md.splitlines()) == 6 and "| hybrid |" in md  # header + 5 rows


def test_evaluation_orders_like_the_serving_ensemble():
    """The evaluation's hybrid on the ranker's normalised scores equals the serving
    ensemble's hybrid on the raw mode scores, to the last bit."""
    from ranker.ensemble import combine, hybrid_scores, order_by

    rng = np.random.default_rng(3)
    ids = [f"i{k}" for k in range(12)]
    backbone = dict(zip(ids, rng.normal(size=12).tolist()))
    raw = {m: dict(zip(ids, rng.normal(size=12).tolist())) for m in ("pointwise", "pairwise", "listwise")}
    weights = EnsembleWeights(pointwise=0.25, pairwise=0.5, listwise=0.25, backbone=0.15)
    served, normalised = hybrid_scores(ids, raw, backbone, weights)
    o = UserOutcome("u", ids[4], ids, [backbone[i] for i in ids], mode_scores=normalised)
    assert combine(ids, normalised, backbone, weights) == served  # exact, not approx
    assert hybrid_ranking(o, weights) == order_by(served, ids, backbone)


def test_more_candidates_than_listwise_identifiers_are_allowed():
    from training.evaluate import EvalConfig

    assert EvalConfig(num_candidates=50).num_candidates == 50  # listwise windows long lists
    with pytest.raises(ValueError, match="num_candidates must be >= 1"):
        EvalConfig(num_candidates=0)
