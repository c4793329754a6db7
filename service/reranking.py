"""Rerank requests (Cohere /v1 and /v2, TEI /rerank) through the one ranking pipeline.

Every shape means the same thing: ``query`` is a user id, each document is a catalog item
id or the title of an item outside the catalog, and the answer is the documents ordered
by the hybrid score, each with its index in the request and a relevance score in [0, 1]
(service/relevance.py). Only the wire format differs, and that stays in the routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stack.settings import Settings
from service.catalog import Catalog, ItemRef
from service.errors import too_many
from service.pipeline import RankingService, RankJob
from service.relevance import evidence_weight, relevance_score
from service.schemas import DocumentIn, modes_tuple, to_documents


@dataclass(frozen=True)
class Reranked:
    index: int  # position of the document in the request
    item_id: str
    title: str
    hybrid: float
    relevance: float


@dataclass(frozen=True)
class RerankAnswer:
    results: list[Reranked]  # best first, all documents
    response: dict[str, Any]  # the pipeline's RankOut-shaped answer (model, degraded, llm_tokens, ...)


async def rerank(ranking: RankingService, catalog: Catalog, settings: Settings, *, user_id: str,
                 documents: Sequence[str | DocumentIn], modes: Sequence[str], use_hints: bool | None,
                 field: str) -> RerankAnswer:
    """Rank ``documents`` for ``user_id``; ``field`` names the documents in error messages."""
    if len(documents) > settings.max_candidates:
        raise too_many(field, len(documents), settings.max_candidates)
    refs: list[ItemRef] = to_documents(list(documents), lambda item_id: catalog.item_index(item_id) is not None)
    job = RankJob(user_id=user_id, history=None, candidates=refs, k=len(refs), num_candidates=len(refs),
                  modes=modes_tuple(list(modes)), weights=None, use_hints=use_hints, candidates_field=field)
    ranked = await ranking.rank(job)
    items = ranked["items"]
    # the modes that actually scored are the keys of mode_scores (the same for every item)
    scored_modes = items[0]["mode_scores"].keys() if items else ()
    hints = ranking.ranker.config.use_hints if use_hints is None else use_hints
    # the weights this request was ranked with (hints off has its own; the rank above refused it otherwise)
    weight = evidence_weight(ranking.ranker.weight_set.for_hints(hints), scored_modes, ranked["degraded"])
    position = {ref.item_id: n for n, ref in enumerate(refs)}
    results = [Reranked(position[it["item_id"]], it["item_id"], it["title"], float(it["score"]),
                        relevance_score(float(it["score"]), weight)) for it in items]
    return RerankAnswer(results, ranked)
