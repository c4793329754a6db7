"""Packed suffix rows: the pack plan and the row layout (pure, no model)."""

from __future__ import annotations

import pytest
import torch

from ranker.engines.packed import balanced_packs, first_fit_packs, pack_rows


def test_packs_are_first_fit_decreasing_within_the_budget() -> None:
    lengths = [50, 178, 40, 46, 39, 47, 60, 45, 178, 30]
    packs = first_fit_packs(lengths, 100)
    assert sorted(i for pack in packs for i in pack) == list(range(len(lengths)))  # each suffix exactly once
    for pack in packs:  # within the budget, except a suffix longer than it, alone
        assert sum(lengths[i] for i in pack) <= 100 or len(pack) == 1
    assert len(packs) == 6  # two oversize alone + the fewest packs of 100 for the 8 others (sum 357): 4
    assert first_fit_packs(lengths, 10_000) == [sorted(range(len(lengths)), key=lambda i: -lengths[i])]
    assert first_fit_packs([], 100) == []
    with pytest.raises(ValueError, match="budget"):
        first_fit_packs(lengths, 0)


def test_balanced_packs_are_as_few_as_first_fit_and_even() -> None:
    # the default request's suffixes: 10 pointwise, 10 pairwise, 3 listwise questions
    lengths = [13] * 10 + [16] * 10 + [32] * 3
    greedy = first_fit_packs(lengths, 256)
    balanced = balanced_packs(lengths, 256)
    assert len(balanced) == len(greedy) == 2
    assert sorted(i for pack in balanced for i in pack) == list(range(len(lengths)))
    loads = sorted(sum(lengths[i] for i in pack) for pack in balanced)
    assert loads == [193, 193]  # first-fit: 256 and 130, i.e. 126 padding tokens in the second row
    assert sorted(sum(lengths[i] for i in pack) for pack in greedy) == [130, 256]
    assert balanced_packs(lengths, 10_000) == first_fit_packs(lengths, 10_000)  # one pack: the same
    assert balanced_packs([], 256) == []
    with pytest.raises(ValueError, match="budget"):
        balanced_packs(lengths, 0)


def test_rows_see_their_prefix_and_their_own_suffix_only() -> None:
    # row 0: suffixes [7, 8] and [9] over a 3-token prefix; row 1: [5, 6] over 2 tokens; width 3
    rows = pack_rows([[[7, 8], [9]], [[5, 6]]], prefix_lens=[3, 2], width=3, pad_id=0)
    assert rows.ids.tolist() == [[7, 8, 9], [5, 6, 0]]
    assert rows.positions.tolist() == [[3, 4, 3], [2, 3, 0]]  # positions restart after the prefix per suffix
    assert (rows.row_of, rows.last_of) == ([0, 0, 1], [1, 2, 1])
    m = rows.mask[:, 0].int().tolist()
    #            prefix  | row
    assert m[0] == [[1, 1, 1, 1, 0, 0],
                    [1, 1, 1, 1, 1, 0],
                    [1, 1, 1, 0, 0, 1]]  # the second suffix does not see the first
    assert m[1] == [[1, 1, 0, 1, 0, 0],  # prefix padding (column 2) hidden
                    [1, 1, 0, 1, 1, 0],
                    [1, 0, 0, 0, 0, 0]]  # a padding token sees the first prefix token only
    assert rows.mask.dtype == torch.bool
