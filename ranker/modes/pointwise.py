"""Pointwise: one prompt per candidate, read P("1".."5"), score = expected rating."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ranker.hints import pointwise_hint
from ranker.modes.base import ModePlan, check_rows, label_probs
from ranker.prompts import (
    DEFAULT_CONFIG,
    POINTWISE_LABELS,
    PromptConfig,
    TokenCounter,
    approx_token_count,
    identifiers_for,
    pointwise_prompt,
    shared_text,
)
from ranker.types import Candidate, ModeScores, UserProfile

RATINGS = np.array([float(label) for label in POINTWISE_LABELS])  # (5,) 1..5


def plan(
    user: UserProfile,
    candidates: Sequence[Candidate],
    *,
    hints: bool = True,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> ModePlan:
    if shared is None:  # rendered once: identical for every candidate (and every mode)
        shared = shared_text(user, config, count_tokens, candidates, hints)
    idents = identifiers_for(candidates, config)  # None: candidates named by title
    prompts = [
        pointwise_prompt(
            user,
            c,
            pointwise_hint(c, candidates) if config.question_hints(hints) else None,
            config=config,
            count_tokens=count_tokens,
            shared=shared,
            idents=idents,
        )
        for c in candidates
    ]
    ids = [c.item_id for c in candidates]
    return ModePlan("pointwise", POINTWISE_LABELS, prompts, keys=[(i,) for i in ids], item_ids=ids)


def expected_rating(logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected rating in [1, 5], label mass) per row of (n, 5) log-probabilities."""
    probs, mass = label_probs(logprobs, len(POINTWISE_LABELS))
    return probs @ RATINGS, mass


def collect(plan: ModePlan, logprobs: np.ndarray) -> ModeScores:
    check_rows(plan, logprobs)
    if not plan.prompts:
        return ModeScores("pointwise", {})
    ratings, mass = expected_rating(logprobs)
    scores = {key[0]: float(r) for key, r in zip(plan.keys, ratings)}
    return ModeScores("pointwise", scores, label_mass=float(mass.mean()))
