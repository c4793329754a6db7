"""Pairwise: "would the user prefer X over Y?" under a budget of comparisons.

Each selected pair is asked in both orders and the two answers are averaged, which
cancels the model's bias for the first (or second) position:
    P(a over b) = (P_yes(a, b) + P_no(b, a)) / 2,  so  P(b over a) = 1 - P(a over b).
Pairs: adjacent pairs in backbone order first (the LLM refines the backbone's ranking
where a swap matters most), then random pairs seeded by the request, up to the budget.
Per-item score: a Bradley-Terry fit on the soft outcomes, reported as the probability of
beating an average candidate. A chain of adjacent pairs thus still yields a global
order, which a mean win rate would not (middle items would all sit near 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ranker.hints import pairwise_hint
from ranker.modes.base import ModePlan, backbone_order, check_rows, label_probs, request_seed
from ranker.prompts import (
    DEFAULT_CONFIG,
    PAIRWISE_LABELS,
    PromptConfig,
    TokenCounter,
    approx_token_count,
    identifiers_for,
    pairwise_prompt,
    shared_text,
)
from ranker.types import Candidate, ModeScores, UserProfile

PRIOR_GAMES = 0.5  # virtual half-win and half-loss against an average item: keeps the fit finite
BT_ITERATIONS = 100


def select_pairs(candidates: Sequence[Candidate], budget: int, seed: int) -> list[tuple[int, int]]:
    """Up to ``budget`` distinct unordered pairs of candidate indices, (better, worse) by backbone."""
    if budget < 0:
        raise ValueError(f"pairwise budget must be >= 0, got {budget}")
    order = backbone_order(candidates)
    adjacent = list(zip(order, order[1:]))
    if budget <= len(adjacent):
        return adjacent[:budget]
    rank = {idx: r for r, idx in enumerate(order)}
    taken = set(adjacent)
    rest = [(a, b) for ra, a in enumerate(order) for b in order[ra + 1 :] if (a, b) not in taken]
    rng = np.random.default_rng(seed)
    extra = [rest[i] for i in rng.permutation(len(rest))[: budget - len(adjacent)]]
    return adjacent + sorted(extra, key=lambda p: (rank[p[0]], rank[p[1]]))


def plan(
    user: UserProfile,
    candidates: Sequence[Candidate],
    *,
    budget: int = 10,
    seed: int = 0,
    hints: bool = True,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> ModePlan:
    ids = [c.item_id for c in candidates]
    pairs = select_pairs(candidates, budget, request_seed(seed, user.user_id, candidates, "pairwise"))
    if pairs and shared is None:
        shared = shared_text(user, config, count_tokens, candidates, hints)
    idents = identifiers_for(candidates, config) if pairs else None  # None: candidates named by title
    prompts, keys = [], []
    for a, b in pairs:
        for first, second in ((a, b), (b, a)):  # both orders, adjacent rows
            hint = pairwise_hint(candidates[first], candidates[second]) if config.question_hints(hints) else None
            pair = (candidates[first], candidates[second])
            prompts.append(pairwise_prompt(user, *pair, hint, config=config, count_tokens=count_tokens, shared=shared,
                                           idents=idents))
            keys.append((ids[first], ids[second]))
    return ModePlan("pairwise", PAIRWISE_LABELS, prompts, keys=keys, item_ids=ids)


def preference(p_yes_ab: float | np.ndarray, p_yes_ba: float | np.ndarray) -> float | np.ndarray:
    """P(a preferred over b) from both orders: P_yes(a, b) and P_no(b, a) = 1 - P_yes(b, a), averaged."""
    return (p_yes_ab + (1.0 - p_yes_ba)) / 2.0


def bradley_terry(item_ids: Sequence[str], outcomes: Sequence[tuple[str, str, float]]) -> dict[str, float]:
    """Soft Bradley-Terry fit, each item reported as P(it beats an average item).

    ``outcomes``: (a, b, P(a over b)). Every item also plays PRIOR_GAMES won and PRIOR_GAMES
    lost against a fixed average item (log-strength 0): the posterior is then strictly concave,
    so Newton's method converges, strengths stay finite, and uncompared items score exactly 0.5.
    """
    index = {item: i for i, item in enumerate(item_ids)}
    n = len(item_ids)
    if n == 0:
        return {}
    wins = np.full(n, PRIOR_GAMES)  # expected wins, prior included
    games = np.zeros((n, n))  # comparisons between i and j
    for a, b, p in outcomes:
        i, j = index[a], index[b]
        wins[i] += p
        wins[j] += 1.0 - p
        games[i, j] += 1.0
        games[j, i] += 1.0
    s = np.zeros(n)  # log-strengths
    for _ in range(BT_ITERATIONS):
        p_pair = 1.0 / (1.0 + np.exp(s[None, :] - s[:, None]))  # (n, n) P(i beats j)
        p_avg = 1.0 / (1.0 + np.exp(-s))  # (n,) P(i beats the average item)
        grad = wins - (games * p_pair).sum(axis=1) - 2 * PRIOR_GAMES * p_avg
        curv = games * p_pair * p_pair.T  # off-diagonal Fisher information
        hess = np.diag(curv.sum(axis=1) + 2 * PRIOR_GAMES * p_avg * (1 - p_avg)) - curv
        step = np.linalg.solve(hess, grad)
        s += np.clip(step, -2.0, 2.0)  # damped: the first steps on lopsided data can overshoot
        if np.abs(step).max() < 1e-10:
            break
    return {item: float(1.0 / (1.0 + np.exp(-v))) for item, v in zip(item_ids, s)}


def pair_preferences(plan: ModePlan, logprobs: np.ndarray) -> tuple[list[tuple[str, str, float]], np.ndarray]:
    """((a, b, P(a over b)) per selected pair, label mass per prompt)."""
    check_rows(plan, logprobs)
    probs, mass = label_probs(logprobs, len(PAIRWISE_LABELS))
    p_yes = probs[:, 0]
    outcomes = [
        (plan.keys[k][0], plan.keys[k][1], float(preference(p_yes[k], p_yes[k + 1])))
        for k in range(0, len(plan.prompts), 2)
    ]
    return outcomes, mass


def collect(plan: ModePlan, logprobs: np.ndarray) -> ModeScores:
    if not plan.prompts:
        check_rows(plan, logprobs)
        return ModeScores("pairwise", {})
    outcomes, mass = pair_preferences(plan, logprobs)
    return ModeScores("pairwise", bradley_terry(plan.item_ids, outcomes), label_mass=float(mass.mean()))
