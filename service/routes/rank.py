"""POST /v1/rank: rank items for one user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from service.deps import RankingDep, SettingsDep, require_api_key
from service.routes._common import RANK_ERRORS, rank_job
from service.schemas import RankIn, RankOut

router = APIRouter(prefix="/v1", tags=["ranking"], dependencies=[Depends(require_api_key)])

EXAMPLES = {
    "retrieve": {"summary": "Known user: the backbone retrieves, the LLM ranks",
                 "value": {"user_id": "1", "k": 5, "num_candidates": 10}},
    "candidates": {"summary": "Rank given items, one of them new to the catalog",
                   "value": {"user_id": "1", "k": 3, "modes": ["pointwise", "listwise"],
                             "candidates": ["50", "181", {"item_id": "new-1", "title": "Dune: Part Two (2024)"}]}},
    "cold_start": {"summary": "A new user described by a history",
                   "value": {"user_id": "web-visitor-17", "history": [{"item_id": "50", "rating": 5},
                                                                       {"item_id": "172", "rating": 4}],
                             "k": 5, "weights": {"backbone": 0.0}}},
}


@router.post("/rank", response_model=RankOut, responses=RANK_ERRORS, summary="Rank items for a user")
async def rank(body: Annotated[RankIn, Body(openapi_examples=EXAMPLES)], ranking: RankingDep,
               settings: SettingsDep) -> dict:
    """Retrieve candidates with the backbone (or take the given ones), score them with the LLM
    in the requested modes, combine with the hybrid weights and return the top k. The user's
    posted events (POST /v1/events) count as history and are never recommended again."""
    return await ranking.rank(rank_job(body, settings))
