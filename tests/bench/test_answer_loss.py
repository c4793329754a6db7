"""bench.answer_loss: the reference models and the requests an adapter never saw (pure parts)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from bench.answer_loss import feature_only_loss, hint_only_loss, paired, unseen_indices
from training.collate import GROUP_STEPS, BatchPlan


def test_hint_only_loss_is_chance_for_uninformative_ranks_and_lower_for_informative_ones() -> None:
    uniform = np.tile(np.arange(1, 11), 50)  # the target at every rank equally often
    beta, loss = hint_only_loss(uniform, 10)
    assert beta == 0.0 and math.isclose(loss, math.log(10))
    beta, loss = hint_only_loss(np.array([1] * 60 + [2] * 25 + [5] * 15), 10)
    assert beta > 0 and loss < math.log(10) - 0.3


def test_feature_only_loss_finds_the_sign_of_the_signal() -> None:
    rng = np.random.default_rng(0)
    features = [rng.normal(size=10) for _ in range(300)]
    best = [int(np.argmax(f)) for f in features]
    worst = [int(np.argmin(f)) for f in features]
    beta_up, loss_up = feature_only_loss(features, best)
    beta_down, loss_down = feature_only_loss(features, worst)
    assert beta_up > 1 and beta_down < -1
    assert loss_up < math.log(10) - 0.5 and loss_down < math.log(10) - 0.5
    beta, loss = feature_only_loss([np.ones(10)] * 5, [3] * 5)  # a constant feature carries nothing
    assert math.isclose(loss, math.log(10))


def test_unseen_requests_are_none_the_tuning_run_took() -> None:
    cfg = SimpleNamespace(seed=3, batch_size=1, grad_accum=4, group_by_length=True)
    lengths = list(np.random.default_rng(1).integers(100, 900, size=1000))
    plan = BatchPlan(lengths, cfg)  # the order ``recranker tune`` takes examples in
    steps = 50
    taken = {i for s in range(steps) for micro in plan.step(s) for i in micro}
    unseen = unseen_indices(len(lengths), cfg.seed, steps * 4, per_step=4)
    assert not taken & set(unseen.tolist())
    assert len(unseen) >= len(lengths) - steps * 4 - 4 * GROUP_STEPS  # at most one length group lost


def test_paired_difference_uses_requests_both_scored_without_hints() -> None:
    mine = [{"index": i, "hints": False, "losses": {"listwise": 2.0}} for i in range(20)]
    theirs = [{"index": i, "hints": i >= 10, "losses": {"listwise": 2.5}} for i in range(5, 30)]
    d = paired(mine, theirs, "listwise")
    assert d["requests"] == 5  # indices 5..9: in both, hint-free in both
    assert d["diff"] == -0.5 and d["ci"] == [-0.5, -0.5]
    assert paired(mine, theirs, "pairwise") is None
