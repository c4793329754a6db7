"""``relevance_score`` in [0, 1]: what rerank clients (Cohere, Jina, TEI) threshold on.

The hybrid score (ranker/ensemble.py) is a weighted sum of z-scores over the request's
candidates: each mode's z plus the backbone's, weighted by the served hybrid weights. Its
scale grows with the weights, so it is not a number a client can compare with 0.5.

    relevance_score = Phi(hybrid / W)

W is the total weight behind the hybrid: the weights of the modes that scored plus the
backbone prior's. ``hybrid / W`` is then the weighted mean of the candidate's z-scores,
and Phi (the standard normal CDF) turns it into a number in [0, 1]. Why this one:

- monotone in the hybrid score (one W per response), so the order never changes;
- fixed: no statistics of the response itself enter, so the same evidence gives the
  same number on every request, and one candidate alone gets 0.5 (no evidence either way);
- meaningful: when every mode agrees, hybrid / W is itself a z-score over the
  candidates, so Phi of it approximates the share of this request's candidates the
  item beats (0.84 = one standard deviation above the average candidate); when the
  modes disagree the weighted mean shrinks towards 0, and so the score towards 0.5;
  0.5 is the average candidate of the request.

It is relative to the request's candidates, like everything the hybrid says: it is not
the probability that the user likes the item, and 0.9 is not "twice as relevant" as
0.45 (Cohere documents the same caveat for its own scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ranker.ensemble import EnsembleWeights


def evidence_weight(weights: EnsembleWeights, modes: Iterable[str], degraded: bool) -> float:
    """W for one response: the weights of the modes that scored plus the backbone's.

    A degraded response (the LLM failed or timed out) is ordered by the backbone's
    z-score alone, unweighted, so W is 1 there.
    """
    if degraded:
        return 1.0
    return sum(weights.of(m) for m in modes) + weights.backbone


def relevance_score(hybrid: float, weight: float) -> float:
    """Phi(hybrid / weight), in [0, 1]; 0.5 when nothing carries weight (or hybrid is NaN)."""
    if weight <= 0 or math.isnan(hybrid):
        return 0.5
    # erfc form: exact in both tails (no 1 - tiny cancellation), and finite for any input
    return 0.5 * math.erfc(-hybrid / weight / math.sqrt(2.0))
