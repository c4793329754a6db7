"""Backbone hints (docs/method.md, hints): one sentence telling the LLM what the conventional
recommender thinks, computed only from backbone scores among the request's candidates.

Hints never quote titles (those are untrusted): they refer to items by position or by
listwise identifier. A candidate whose ``backbone_score`` is None gets no hint.
"""

from __future__ import annotations

from collections.abc import Sequence

from ranker.types import Candidate

HINT_TOP_N = 5


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def backbone_rank(candidate: Candidate, candidates: Sequence[Candidate]) -> tuple[int, int] | None:
    """(1-based rank, number ranked) of ``candidate`` among the scored candidates, or None.

    Ties share the better rank, so equal scores give equal hints.
    """
    if candidate.backbone_score is None:
        return None
    scored = [c.backbone_score for c in candidates if c.backbone_score is not None]
    better = sum(1 for s in scored if s > candidate.backbone_score)
    return better + 1, len(scored)


def pointwise_hint(candidate: Candidate, candidates: Sequence[Candidate]) -> str | None:
    """The backbone's preference for one candidate, as its rank among the request's candidates."""
    ranked = backbone_rank(candidate, candidates)
    if ranked is None:
        return None
    rank, total = ranked
    return f"Hint: another recommender ranks it {_ordinal(rank)} of {total}."


def pairwise_hint(first: Candidate, second: Candidate) -> str | None:
    """Which of the two the backbone scores higher (None when unknown or tied)."""
    a, b = first.backbone_score, second.backbone_score
    if a is None or b is None or a == b:
        return None
    which = "first" if a > b else "second"
    return f"Hint: another recommender prefers the {which}."


def listwise_hint(
    shown: Sequence[Candidate], identifiers: Sequence[str], top_n: int = HINT_TOP_N
) -> str | None:
    """The backbone's top ``top_n`` among the shown candidates, by identifier, best first."""
    if len(shown) != len(identifiers):
        raise ValueError(f"{len(shown)} candidates but {len(identifiers)} identifiers")
    scored = [
        (c.backbone_score, i, ident)
        for i, (c, ident) in enumerate(zip(shown, identifiers))
        if c.backbone_score is not None
    ]
    if not scored:
        return None
    # stable on ties: the earlier-shown candidate first
    best = sorted(scored, key=lambda t: (-t[0], t[1]))[:top_n]
    return f"Hint: another recommender's top {len(best)}: {', '.join(t[2] for t in best)}."
