"""Listwise: candidates labelled A, B, C, ... in several seeded orders; the answer's first
token distribution over the identifiers scores every shown candidate at once.

Position shifting (method.md §6): the shown orders are rotations of one seeded random
permutation, so across S shuffles each candidate sits at S evenly spread positions
(independent shuffles only achieve that in expectation). The seed and the base order
depend on the request's candidate *set*, not on the order they arrived in, so permuting
the input changes nothing. More than 20 candidates are split into balanced windows, with
a fresh permutation per shuffle so windows mix; a window's probabilities are scaled by
its share of the candidates, so every shuffle hands out a total score of 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ranker.hints import listwise_hint
from ranker.modes.base import ModePlan, check_rows, label_probs, request_seed
from ranker.prompts import (
    DEFAULT_CONFIG,
    LISTWISE_LABELS,
    MAX_LISTWISE,
    PromptConfig,
    TokenCounter,
    approx_token_count,
    catalogue_order,
    identifiers_for,
    listwise_identifiers,
    listwise_prompt,
    shared_text,
)
from ranker.types import Candidate, ModeScores, UserProfile


def shown_orders(candidates: Sequence[Candidate], shuffles: int, seed: int) -> list[list[list[int]]]:
    """Per shuffle, the windows to show: lists of candidate indices in display order."""
    if shuffles < 1:
        raise ValueError(f"listwise shuffles must be >= 1, got {shuffles}")
    n = len(candidates)
    canonical = sorted(range(n), key=lambda i: candidates[i].item_id)  # independent of input order
    rng = np.random.default_rng(seed)
    base = [canonical[i] for i in rng.permutation(n)]
    n_windows = math.ceil(n / MAX_LISTWISE)
    orders = []
    for s in range(shuffles):
        if n_windows == 1:
            shift = (s * n) // shuffles
            order = base[shift:] + base[:shift]
        else:
            order = [canonical[i] for i in rng.permutation(n)]
        bounds = np.linspace(0, n, n_windows + 1).round().astype(int)
        orders.append([order[a:b] for a, b in zip(bounds, bounds[1:])])
    return orders


def plan(
    user: UserProfile,
    candidates: Sequence[Candidate],
    *,
    shuffles: int = 3,
    seed: int = 0,
    hints: bool = True,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> ModePlan:
    ids = [c.item_id for c in candidates]
    if not candidates:
        return ModePlan("listwise", LISTWISE_LABELS, [], item_ids=ids)
    if shared is None:
        shared = shared_text(user, config, count_tokens, candidates, hints)
    idents = identifiers_for(candidates, config)
    # catalogue layout: the labels are the catalogue's letters, whatever order a question reads them in
    catalogue = None if idents is None else tuple(ids[i] for i in catalogue_order(candidates))
    prompts, keys = [], []
    for windows in shown_orders(candidates, shuffles, request_seed(seed, user.user_id, candidates, "listwise")):
        for window in windows:
            shown = [candidates[i] for i in window]
            hint = listwise_hint(shown, listwise_identifiers(len(shown))) if config.question_hints(hints) else None
            prompts.append(listwise_prompt(user, shown, hint, config=config, count_tokens=count_tokens, shared=shared,
                                           idents=idents))
            keys.append(catalogue or tuple(ids[i] for i in window))
    return ModePlan("listwise", LISTWISE_LABELS, prompts, keys=keys, item_ids=ids)


def collect(plan: ModePlan, logprobs: np.ndarray) -> ModeScores:
    check_rows(plan, logprobs)
    if not plan.prompts:
        return ModeScores("listwise", {})
    n = len(plan.item_ids)
    totals = dict.fromkeys(plan.item_ids, 0.0)
    masses = []
    for row, shown in zip(np.asarray(logprobs), plan.keys):
        probs, mass = label_probs(row[None, :], len(shown))
        masses.append(float(mass[0]))
        for item, p in zip(shown, probs[0]):
            totals[item] += float(p) * len(shown) / n
    shuffles = len(plan.prompts) // math.ceil(n / MAX_LISTWISE)
    scores = {item: total / shuffles for item, total in totals.items()}
    return ModeScores("listwise", scores, label_mass=float(np.mean(masses)))
