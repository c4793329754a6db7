"""POST /v1/rank/batch: many rank requests, scored through the engine together."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.deps import RankingDep, SettingsDep, require_api_key
from service.errors import too_many
from service.routes._common import RANK_ERRORS, rank_job
from service.schemas import BatchRankIn, BatchRankOut

router = APIRouter(prefix="/v1", tags=["ranking"], dependencies=[Depends(require_api_key)])


@router.post("/rank/batch", response_model=BatchRankOut, responses=RANK_ERRORS, summary="Rank for many users")
async def rank_batch(body: BatchRankIn, ranking: RankingDep, settings: SettingsDep) -> dict:
    """Each request is answered as by POST /v1/rank; those not served from the cache share
    one engine batch (one forward batch per mode across all of them). An invalid request
    fails the whole call, with its index in the message."""
    limit = min(settings.max_batch_requests, settings.queue_max)  # a bigger job could never be queued
    if len(body.requests) > limit:
        raise too_many("requests", len(body.requests), limit)
    jobs = [rank_job(r, settings, where=f"requests[{n}].") for n, r in enumerate(body.requests)]
    return {"results": await ranking.rank_many(jobs)}
