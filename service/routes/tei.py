"""POST /rerank: Hugging Face text-embeddings-inference's rerank shape, so backends that
rerank through TEI can point at this service unchanged.

Request ``{query, texts, raw_scores, return_text, truncate, truncation_direction}``, answer
``[{index, score, text?}]`` best first; errors ``{error, error_type}`` with TEI's statuses.
``query`` is the user id and ``texts`` are item ids or titles, as for /v1/rerank.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.deps import CatalogDep, RankingDep, SettingsDep, require_api_key
from service.error_shapes import tei_shape
from service.errors import ServiceError
from service.reranking import rerank
from service.schemas import TeiErrorOut, TeiRankOut, TeiRerankIn

ERROR_SHAPE = tei_shape

ERRORS = {
    400: {"model": TeiErrorOut, "description": "`texts` is empty (error_type Empty)."},
    401: {"model": TeiErrorOut, "description": "Missing or wrong API key (Authorization: Bearer or X-API-Key)."},
    404: {"model": TeiErrorOut, "description": "Unknown user without stored events."},
    413: {"model": TeiErrorOut, "description": "More texts than RECRANKER_MAX_CANDIDATES, or a body over "
                                               "RECRANKER_MAX_BODY_BYTES (error_type Validation)."},
    422: {"model": TeiErrorOut, "description": "Malformed body or an unknown item id that is not a usable title."},
    429: {"model": TeiErrorOut, "description": "Ranking queue full (error_type Overloaded, see Retry-After)."},
    503: {"model": TeiErrorOut, "description": "Service starting (error_type Unhealthy)."},
}

router = APIRouter(tags=["ranking"], dependencies=[Depends(require_api_key)])


@router.post("/rerank", response_model=list[TeiRankOut], response_model_exclude_none=True, responses=ERRORS,
             summary="Rerank texts for a user (TEI shape)")
async def rerank_tei(body: TeiRerankIn, ranking: RankingDep, catalog: CatalogDep, settings: SettingsDep) -> list:
    """``score`` is the relevance score in [0, 1] (Phi of the hybrid over its total weight), or
    with ``raw_scores`` the raw hybrid score; the order is the same. ``text`` (with
    ``return_text``) is the text as sent. ``truncate`` is accepted: a text is at most 300
    characters and the prompts keep their own token budget."""
    if not body.texts:
        raise ServiceError(400, "`texts` cannot be empty", kind="empty")
    answer = await rerank(ranking, catalog, settings, user_id=body.query, documents=body.texts,
                          modes=body.modes, use_hints=body.use_hints, field="texts")
    return [{"index": r.index, "score": r.hybrid if body.raw_scores else r.relevance,
             "text": body.texts[r.index] if body.return_text else None} for r in answer.results]
