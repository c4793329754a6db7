"""POST /v1/events: append a user's new interactions (seen by the next /v1/rank)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from service.deps import CatalogDep, MetricsDep, SettingsDep, StoreDep, require_api_key
from service.errors import too_many
from service.routes._common import AUTH_ERRORS, BODY_ERRORS
from service.schemas import ErrorOut, EventsIn, EventsOut, to_events
from service.store import StoreError

router = APIRouter(prefix="/v1", tags=["users"], dependencies=[Depends(require_api_key)])

ERRORS = {**AUTH_ERRORS, **BODY_ERRORS,
          422: {"model": ErrorOut, "description": "Malformed body or unknown item id without a title."},
          503: {"model": ErrorOut, "description": "The user store (Redis) is unreachable: nothing was stored."}}


@router.post("/events", response_model=EventsOut, responses=ERRORS, summary="Record a user's interactions")
async def post_events(body: EventsIn, store: StoreDep, catalog: CatalogDep, settings: SettingsDep,
                      metrics: MetricsDep) -> dict:
    """Events are appended oldest first; the newest RECRANKER_USER_HISTORY_MAX are kept. The
    items become part of the user's history (and are excluded from retrieved candidates),
    and the user's state version changes, so cached rankings for them are not reused."""
    if len(body.events) > settings.user_history_max:
        raise too_many("events", len(body.events), settings.user_history_max)
    events = to_events(body.events, now=int(time.time()))
    catalog.check_events(events)
    try:
        state = await store.append_events(body.user_id, events)
    except StoreError:
        metrics.store_errors.labels("append").inc()
        raise
    return {"user_id": body.user_id, "accepted": len(events), "stored": len(state.events),
            "state_version": state.version}
