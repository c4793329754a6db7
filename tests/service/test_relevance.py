"""relevance_score = Phi(hybrid / W): bounds, monotonicity, the neutral point, W per response."""

from __future__ import annotations

import math

import pytest

from ranker.ensemble import EnsembleWeights
from service.relevance import evidence_weight, relevance_score


def test_in_unit_interval_finite_and_monotone():
    hybrids = [-1e308, -50.0, -3.0, -1.0, -1e-9, 0.0, 1e-9, 0.4, 1.0, 3.0, 50.0, 1e308, math.inf, -math.inf]
    scores = [relevance_score(h, 1.3) for h in sorted(hybrids)]
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores)  # never reorders
    assert relevance_score(-3.0, 1.3) < relevance_score(-1.0, 1.3) < relevance_score(0.4, 1.3)  # strictly where it can be


def test_values_are_the_normal_cdf_of_the_weighted_mean_z():
    assert relevance_score(0.0, 2.0) == 0.5  # the request's average candidate
    assert relevance_score(2.0, 2.0) == pytest.approx(0.8413447, abs=1e-7)  # one standard deviation above
    assert relevance_score(-2.0, 2.0) == pytest.approx(1 - 0.8413447, abs=1e-7)
    assert relevance_score(3.92, 2.0) == pytest.approx(0.975, abs=1e-4)


def test_no_weight_or_nan_is_neutral():
    assert relevance_score(1.7, 0.0) == 0.5
    assert relevance_score(math.nan, 1.0) == 0.5


def test_evidence_weight_counts_the_modes_that_scored_and_the_backbone():
    w = EnsembleWeights(pointwise=0.25, pairwise=0.5, listwise=0.25, backbone=0.15)
    assert evidence_weight(w, ["pointwise"], degraded=False) == pytest.approx(0.4)
    assert evidence_weight(w, ["pointwise", "pairwise", "listwise"], degraded=False) == pytest.approx(1.15)
    assert evidence_weight(w, [], degraded=True) == 1.0  # backbone z-score alone, unweighted
