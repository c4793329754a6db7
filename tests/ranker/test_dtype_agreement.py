"""bf16 (the CPU default where the CPU has bf16 units) against float32 on real prompts: the
label probabilities each mode reads stay close, and every prompt's preferred label is the
same. The ranking-level agreement over all test users is a benchmark (docs/results.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from candidate_gen.data import load_movielens_100k
from candidate_gen.split import leave_one_out
from ranker.chat import to_scoring_prompt
from ranker.modes.base import label_probs
from ranker.modes.registry import ALL_LABELS, LABEL_COLUMNS
from ranker.ranker import Ranker, RankerConfig, RankRequest
from stack.profiles import candidates_from_items, profile_from_events


@pytest.mark.slow
def test_bf16_label_probabilities_agree_with_float32(hf_engine, hf_engine_bf16, ml100k_dir: Path) -> None:
    ds = load_movielens_100k(ml100k_dir)
    split = leave_one_out(ds)
    plans = Ranker(hf_engine, RankerConfig()).plans
    prompts = []
    for u in (0, 9):  # two real users, ten catalog items each, a served-size request
        items = list(range(10 * u, 10 * u + 10))
        request = RankRequest(profile_from_events(ds, ds.user_ids[u], split.users[u].context("test")),
                              candidates_from_items(ds, items, list(np.linspace(1.0, 0.0, 10))), k=10)
        prompts += [to_scoring_prompt(hf_engine, p) for plan in plans(request).values() for p in plan.prompts]
    full = hf_engine.score(prompts, ALL_LABELS).logprobs
    half = hf_engine_bf16.score(prompts, ALL_LABELS).logprobs
    for mode, columns in LABEL_COLUMNS.items():
        rows = [i for i, p in enumerate(prompts) if _mode_of(p.suffix) == mode]
        p32, _ = label_probs(full[rows, columns])
        p16, _ = label_probs(half[rows, columns])
        if mode == "listwise":  # only the shown identifiers (10) carry mass
            p32, p16 = p32[:, :10], p16[:, :10]
        diff = np.abs(p32 - p16)
        assert diff.max() < 0.05 and diff.mean() < 0.01, (mode, diff.max(), diff.mean())
        assert (p32.argmax(1) == p16.argmax(1)).mean() >= 0.9, mode


def _mode_of(suffix: str) -> str:
    return "pointwise" if suffix.startswith("Rate ") else "pairwise" if suffix.startswith("Prefer ") else "listwise"
