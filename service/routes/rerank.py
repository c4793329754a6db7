"""POST /v1/rerank: the Cohere/Jina rerank shape, with a user id as the query."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.deps import CatalogDep, RankingDep, SettingsDep, require_api_key
from service.errors import too_many
from service.pipeline import RankJob
from service.routes._common import RANK_ERRORS
from service.schemas import RerankIn, RerankOut, modes_tuple, to_documents

router = APIRouter(prefix="/v1", tags=["ranking"], dependencies=[Depends(require_api_key)])


@router.post("/rerank", response_model=RerankOut, responses=RANK_ERRORS, summary="Rerank documents for a user")
async def rerank(body: RerankIn, ranking: RankingDep, catalog: CatalogDep, settings: SettingsDep) -> dict:
    """``query`` is a user id; ``documents`` are catalog item ids, new items' titles, or
    {id, title|text} objects. Results are sorted by relevance_score (the hybrid score),
    ``index`` pointing into ``documents``."""
    if len(body.documents) > settings.max_candidates:
        raise too_many("documents", len(body.documents), settings.max_candidates)
    refs = to_documents(body.documents, lambda item_id: catalog.item_index(item_id) is not None)
    job = RankJob(user_id=body.query, history=None, candidates=refs, k=len(refs), num_candidates=len(refs),
                  modes=modes_tuple(body.modes), weights=None, use_hints=body.use_hints,
                  candidates_field="documents")
    ranked = await ranking.rank(job)
    position = {ref.item_id: n for n, ref in enumerate(refs)}
    results = [{"index": position[it["item_id"]], "relevance_score": it["score"],
                "document": {"id": it["item_id"], "text": it["title"]} if body.return_documents else None}
               for it in ranked["items"]]
    return {"results": results[: body.top_n], "model": ranked["model"], "adapter": ranked["adapter"],
            "degraded": ranked["degraded"], "degraded_reason": ranked["degraded_reason"]}
