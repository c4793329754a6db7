"""The service names how its candidates are ordered (readyz)."""

from __future__ import annotations

from candidate_gen.recency import RecencyConfig, RecencyRescorer
from candidate_gen.retrieve import CandidateGenerator
from service.routes.health import _order
from tests.candidate_gen.test_recency import co_likes
from tests.candidate_gen.test_retrieve import FixedBackbone


def test_readyz_names_the_recency_reordering_when_it_is_on() -> None:
    plain = CandidateGenerator.from_backbone(FixedBackbone(), "exact")
    recency = CandidateGenerator.from_backbone(FixedBackbone(), "exact",
                                               recency=RecencyRescorer(co_likes(), RecencyConfig(3.0, 2)))
    assert _order(plain) == "fixed"
    assert _order(recency) == "fixed+recency: re-ordered by co-likes with the last 2 likes, weight 3"
