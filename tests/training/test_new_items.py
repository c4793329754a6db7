"""New items (no backbone score): which users and candidates are chosen, and that a ranker
reading titles is measured against the random order, paired, end to end."""

from __future__ import annotations

import numpy as np
import pytest

from candidate_gen.artifacts import LoadedBackbone
from candidate_gen.pop import PopBackbone
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import leave_one_out
from ranker.ensemble import WeightSet
from ranker.ranker import Ranker, RankerConfig
from stack.build import Stack
from stack.settings import Settings
from tests.datasets import dataset_from_rows
from tests.ranker.test_ranker import KeywordEngine
from training import pipeline
from training.evaluate import read_outcomes
from training.new_items import hold_out_items, new_item_cases
from training.pipeline import DataChoice

N_USERS, N_ITEMS = 60, 40


def liked_good_split():
    """Users like (5 stars) every "Good" title and dislike (2 stars) the others."""
    rng = np.random.default_rng(0)
    titles = [f"Good film {k}" if k % 3 == 0 else f"Film {k}" for k in range(N_ITEMS)]
    rows = []
    for u in range(N_USERS):
        for t, i in enumerate(rng.choice(N_ITEMS, size=12, replace=False)):
            rows.append((u, int(i), 5.0 if i % 3 == 0 else 2.0, 1000 * u + t))
    return leave_one_out(dataset_from_rows(rows, N_USERS, N_ITEMS, titles=titles))


def test_hold_out_items_is_a_seeded_share() -> None:
    a = hold_out_items(1000, 0.2, seed=3)
    assert len(a) == 200 and all(0 <= i < 1000 for i in a)
    assert a == hold_out_items(1000, 0.2, seed=3) and a != hold_out_items(1000, 0.2, seed=4)
    with pytest.raises(ValueError, match="share"):
        hold_out_items(1000, 1.0, seed=0)


def test_cases_hold_only_new_unrated_candidates_and_no_new_history() -> None:
    split = liked_good_split()
    new = hold_out_items(N_ITEMS, 0.5, seed=1)
    cases = new_item_cases(split, new, "test", num_candidates=5, seed=0)
    eligible = [u for u in split.eval_users("test") if split.users[u].held_out("test") in new]
    assert cases and len(cases) <= len(eligible)
    for c in cases:
        us = split.users[c.user]
        assert c.target == us.held_out("test") and c.target in c.candidates
        assert len(set(c.candidates)) == 5 and set(c.candidates) <= new
        assert not (set(c.candidates) - {c.target}) & us.seen("test")  # nothing the user already rated
        assert all(e.item not in new for e in c.history)
        assert [e for e in us.context("test") if e.item not in new] == c.history
    # the target does not sit at one position: the order is a shuffle
    assert len({c.candidates.index(c.target) for c in cases}) > 1
    again = new_item_cases(split, new, "test", num_candidates=5, seed=0)
    assert [c.candidates for c in again] == [c.candidates for c in cases]


def test_a_title_reading_ranker_beats_the_random_order(tmp_path, monkeypatch) -> None:
    split = liked_good_split()
    ds = split.dataset
    backbone = PopBackbone.fit(split.train_interactions()[1], ds.n_items)
    loaded = LoadedBackbone(backbone, {"model": "pop", "fingerprint": ds.fingerprint, "created": "t"},
                            ds.item_ids, ds.user_ids)
    engine = KeywordEngine()  # prefers titles with "Good": every held-out like here
    ranker = Ranker(engine, RankerConfig(pairwise_budget=2, listwise_shuffles=1), WeightSet())
    stack = Stack(ds, split, loaded, CandidateGenerator.from_backbone(backbone, "exact"), None, engine, ranker)
    monkeypatch.setattr(pipeline, "_eval_stack", lambda *a, **k: stack)
    settings = Settings(_env_file=None, home=tmp_path / "home")

    outcomes_file = tmp_path / "outcomes.jsonl"
    run = pipeline.evaluate_new_items(settings, DataChoice(), adapter="none", share=0.5, seed=1, num_candidates=5,
                                      stage="test", users=None, outcomes_path=outcomes_file)
    out = run.result
    written = read_outcomes(outcomes_file)  # per-user outcomes, readable as an evaluation cache
    assert len(written) == out["users"]
    assert all(o.target in o.candidates and set(o.mode_scores) == {"pointwise", "pairwise", "listwise"}
               for o in written.values())
    cases = new_item_cases(split, hold_out_items(N_ITEMS, 0.5, 1), "test", 5, 1)
    assert out["users"] == len(cases) == out["users_with_target_in_candidates"] and out["candidate_ceiling"] == 1
    assert out["hints"] == "off" and out["weights"]["backbone"] == 0
    listwise = out["paired"]["listwise"]["NDCG@3"]
    assert out["rows"]["listwise"]["NDCG@3"] > out["rows"]["backbone"]["NDCG@3"]
    assert listwise["ci"][0] > 0  # paired CI above 0: reading titles beats the random order
    assert any("random order" in t for t in run.tables)
    # more candidates than any user has unrated new items: no case, one readable error
    with pytest.raises(pipeline.PipelineError, match="no test user"):
        pipeline.evaluate_new_items(settings, DataChoice(), adapter="none", share=0.5, seed=1, num_candidates=30,
                                    stage="test", users=None)
