"""New items: ranking what the backbone has never seen (issue 9, lever 5).

A seeded share of the catalogue plays the part of new items: nobody had interacted with
them when the backbone was trained, so it has no embedding and no score for them, and any
order it gives them is arbitrary. That order is modelled as a seeded random permutation
(the "backbone" row of the report: what a score-free ranker gives). For every user whose
held-out like is such an item, the candidates are that item plus other new items the user
never rated, the user's history holds no new item (nobody had seen them yet), and the LLM
ranks the candidates from their titles alone, hints off (there are no scores to hint).

The report is the offline evaluation's (``training.evaluate.report``): rows, and paired
differences of each LLM row against the random order on the same users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from candidate_gen.split import Event, Split, Stage
from ranker.ensemble import EnsembleWeights
from ranker.ranker import Ranker, RankRequest
from ranker.types import MODES
from stack.profiles import candidates_from_items, profile_from_events
from training.evaluate import UserOutcome, scores_by_mode

# The LLM rows only: no backbone prior exists for new items.
MODES_ONLY = EnsembleWeights(backbone=0.0)


@dataclass(frozen=True)
class NewItemCase:
    user: int  # user index
    target: int  # item index of the held-out like, a new item
    candidates: list[int]  # target + other new items, in a random order (the score-free ranking)
    history: list[Event]  # the user's context at the stage, new items removed


def hold_out_items(n_items: int, share: float, seed: int) -> frozenset[int]:
    """A seeded random ``share`` of the item indices, to be treated as new."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be between 0 and 1 (exclusive), got {share}")
    rng = np.random.default_rng(seed)
    n = max(1, round(n_items * share))
    return frozenset(rng.choice(n_items, size=n, replace=False).tolist())


def new_item_cases(split: Split, new_items: frozenset[int], stage: Stage, num_candidates: int,
                   seed: int) -> list[NewItemCase]:
    """One case per user whose held-out like at ``stage`` is a new item and who has at least
    ``num_candidates - 1`` unrated new items to compete with it."""
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be >= 2, got {num_candidates}")
    rng = np.random.default_rng(seed)
    pool = sorted(new_items)
    cases = []
    for u in split.eval_users(stage):
        us = split.users[u]
        target = us.held_out(stage)
        if target not in new_items:
            continue
        seen = us.seen(stage) | {target}
        others = [i for i in pool if i not in seen]
        if len(others) < num_candidates - 1:
            continue
        picked = rng.choice(len(others), size=num_candidates - 1, replace=False)
        candidates = [target, *(others[k] for k in picked)]
        rng.shuffle(candidates)
        history = [e for e in us.context(stage) if e.item not in new_items]
        cases.append(NewItemCase(u, target, candidates, history))
    return cases


def rank_cases(split: Split, ranker: Ranker, cases: Sequence[NewItemCase], progress: bool = True) -> list[UserOutcome]:
    """Each case ranked by every LLM mode from titles alone (hints off, no backbone scores)."""
    ds = split.dataset
    outcomes = []
    for case in tqdm(cases, disable=None if progress else True, desc="new items"):
        uid = ds.user_ids[case.user]
        request = RankRequest(
            user=profile_from_events(ds, uid, case.history),
            candidates=candidates_from_items(ds, case.candidates, None),
            modes=MODES, k=len(case.candidates), use_hints=False, weights=MODES_ONLY, score_all_modes=True,
        )
        result = ranker.rank(request)
        outcome = UserOutcome(
            user_id=uid, target=ds.item_ids[case.target], candidates=[ds.item_ids[i] for i in case.candidates],
            backbone_scores=[0.0] * len(case.candidates),  # no scores: ties keep the random order
            mode_scores=scores_by_mode(result), degraded=result.degraded,
        )
        outcomes.append(outcome)
    return outcomes
