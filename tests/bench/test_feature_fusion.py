"""bench.feature_fusion: features, fused ranks and the grid (pure parts)."""

from __future__ import annotations

import math

import numpy as np

from bench.feature_fusion import (COARSE_STEPS, FEATURES, STEPS, Cases, candidate_features, diff_matrix, fused_ranks,
                                  grid_for)
from bench.item_features import release_year
from candidate_gen.recency import CoLikes, zscores


def test_zscores_are_zero_for_a_constant_row_and_standardised_otherwise() -> None:
    z = zscores(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]]))
    assert np.all(z[0] == 0)
    assert math.isclose(z[1].mean(), 0.0, abs_tol=1e-12) and math.isclose(z[1].std(), 1.0)


def test_release_year_reads_the_title_suffix_only() -> None:
    assert release_year("Toy Story (1995)") == 1995.0
    assert math.isnan(release_year("Kolya (1996) extended"))
    assert math.isnan(release_year("Untitled"))


def test_candidate_features_follow_the_users_history() -> None:
    genres = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    years = np.array([1990.0, 1950.0, 1991.0, float("nan")])
    popularity = np.array([0.0, 1.0, 2.0, 3.0])
    colikes = CoLikes([np.array([0]), np.array([1, 2]), np.array([1, 2, 3]), np.array([4])])  # items' likers
    raw = candidate_features(np.array([2, 3]), [0, 0, 1], popularity, genres, years, colikes)
    pop, genre_fit, recent_fit, year_fit, colike_all, colike_recent = raw
    assert list(pop) == [2.0, 3.0]
    assert genre_fit[0] > genre_fit[1] > 0  # two of three likes share item 2's genre
    assert year_fit[0] == -1.0  # median liked year 1990
    assert year_fit[1] == year_fit[0]  # an unknown year gets the mean fit, not an extreme one
    shared = 2 / np.sqrt(2 * 3)  # items 1 and 2 share two likers
    assert np.allclose(colike_all, [shared / 3, 0.0])  # item 2 co-liked with item 1 only, one like of three
    recent_only = candidate_features(np.array([2, 3]), [0, 0, 1], popularity, genres, years, colikes, recent=1)[5]
    assert np.allclose(recent_only, [shared, 0.0])


def test_fused_ranks_move_the_target_only_when_the_feature_outweighs_the_backbone() -> None:
    backbone = np.array([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0]])
    feature = np.array([[[-1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]])  # user 0: the feature favours the last item
    cases = Cases(np.array([2, -1]), backbone, feature)
    assert fused_ranks(cases, np.array([0.0])) == [2, None]
    assert fused_ranks(cases, np.array([1.0])) == [2, None]  # all tied at 0: the backbone order stands
    assert fused_ranks(cases, np.array([2.0])) == [0, None]
    diffs = diff_matrix(cases, [np.array([0.0]), np.array([2.0])])
    assert np.all(diffs[0] == 0) and diffs[1, 0] == 1.0 - 0.5 and diffs[1, 1] == 0.0


def test_grid_starts_with_backbone_only_and_covers_every_combination() -> None:
    grid = grid_for((0, 2), COARSE_STEPS)
    assert np.all(grid[0] == 0)
    assert len(grid) == len(COARSE_STEPS) ** 2
    assert all(w[1] == 0 and w[3] == 0 and w[4] == 0 and w[5] == 0 for w in grid)
    assert len(grid_for((4,))) == len(STEPS) and len(FEATURES) == len(grid[0])
