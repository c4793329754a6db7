"""POST /v1/rerank and /v2/rerank: Cohere's rerank shape (what ``cohere.Client.rerank`` and
``cohere.ClientV2.rerank`` send and read), with a user id as the query.

Both versions take the same body (every field any Cohere SDK version sends) and give the
same answer; errors are Cohere-shaped (``{"message"}``, 400 for an invalid request).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from service.deps import CatalogDep, RankingDep, SettingsDep, require_api_key
from service.error_shapes import cohere_shape
from service.reranking import rerank
from service.schemas import CohereErrorOut, RerankIn, RerankOut

ERROR_SHAPE = cohere_shape

ERRORS = {
    400: {"model": CohereErrorOut, "description": "Invalid request: malformed JSON, a wrong field, an unknown item "
                                                  "id without a title, or too many documents; the message says which."},
    401: {"model": CohereErrorOut, "description": "Missing or wrong API key (X-API-Key or Authorization: Bearer)."},
    404: {"model": CohereErrorOut, "description": "Unknown user without stored events."},
    413: {"model": CohereErrorOut, "description": "Request body over RECRANKER_MAX_BODY_BYTES."},
    503: {"model": CohereErrorOut, "description": "Ranking queue full (see Retry-After) or service starting."},
}

router = APIRouter(tags=["ranking"], dependencies=[Depends(require_api_key)])

EXAMPLES = {
    "ids": {"summary": "Catalog items and one new item for user 1",
            "value": {"model": "recranker", "query": "1", "documents": ["50", "181", "Oppenheimer (2023)"],
                      "top_n": 2}},
    "objects": {"summary": "Documents as objects, echoed back",
                "value": {"query": "1", "documents": [{"id": "50"}, {"text": "Dune: Part Two (2024)"}],
                          "return_documents": True, "modes": ["pointwise"]}},
}


async def _answer(body: RerankIn, ranking: RankingDep, catalog: CatalogDep, settings: SettingsDep,
                  version: str) -> dict[str, Any]:
    answer = await rerank(ranking, catalog, settings, user_id=body.query, documents=body.documents,
                          modes=body.modes, use_hints=body.use_hints, field="documents")
    ranked = answer.response
    results = [{"index": r.index, "relevance_score": r.relevance, "hybrid_score": r.hybrid,
                "document": {"id": r.item_id, "text": r.title} if body.return_documents else None}
               for r in answer.results]
    return {"id": uuid.uuid4().hex, "results": results[: body.top_n],
            "meta": {"api_version": {"version": version},
                     "tokens": {"input_tokens": ranked["llm_tokens"], "output_tokens": 0}},
            "model": ranked["model"], "adapter": ranked["adapter"],
            "degraded": ranked["degraded"], "degraded_reason": ranked["degraded_reason"]}


DESCRIPTION = """``query`` is a user id; ``documents`` are catalog item ids, new items' titles, or
{id, title|text} objects. Results are sorted best first, ``index`` pointing into ``documents``;
``relevance_score`` is in [0, 1] (Phi of the hybrid score over its total weight: 0.5 is the
request's average candidate) and ``hybrid_score`` is the raw hybrid score."""


@router.post("/v1/rerank", response_model=RerankOut, responses=ERRORS, summary="Rerank documents for a user (Cohere v1)",
             description=DESCRIPTION)
async def rerank_v1(body: Annotated[RerankIn, Body(openapi_examples=EXAMPLES)], ranking: RankingDep,
                    catalog: CatalogDep, settings: SettingsDep) -> dict:
    return await _answer(body, ranking, catalog, settings, "1")


@router.post("/v2/rerank", response_model=RerankOut, responses=ERRORS, summary="Rerank documents for a user (Cohere v2)",
             description=DESCRIPTION)
async def rerank_v2(body: Annotated[RerankIn, Body(openapi_examples=EXAMPLES)], ranking: RankingDep,
                    catalog: CatalogDep, settings: SettingsDep) -> dict:
    return await _answer(body, ranking, catalog, settings, "2")
