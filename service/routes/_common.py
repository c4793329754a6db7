"""Request -> RankJob conversion shared by /v1/rank and /v1/rank/batch (limits checked here)."""

from __future__ import annotations

from stack.settings import Settings
from service.errors import too_many
from service.pipeline import RankJob
from service.schemas import ErrorOut, RankIn, modes_tuple, to_candidates, to_history

# Shared error responses for the OpenAPI document.
AUTH_ERRORS = {401: {"model": ErrorOut, "description": "Missing or wrong API key (X-API-Key or Authorization: Bearer), "
                                                     "when one is configured."}}
BODY_ERRORS = {
    408: {"model": ErrorOut, "description": "Request body not received within RECRANKER_BODY_TIMEOUT_S."},
    413: {"model": ErrorOut, "description": "Request body over RECRANKER_MAX_BODY_BYTES."},
    415: {"model": ErrorOut, "description": "Content-Type is not application/json."},
}
RANK_ERRORS = {
    **AUTH_ERRORS,
    **BODY_ERRORS,
    404: {"model": ErrorOut, "description": "Unknown user without a history or stored events."},
    422: {"model": ErrorOut, "description": "Malformed JSON, a wrong field, an unknown item id without a title, "
                                            "or a limit exceeded; the message names the field."},
    503: {"model": ErrorOut, "description": "Ranking queue full (see Retry-After) or service starting."},
}


def rank_job(body: RankIn, settings: Settings, where: str = "") -> RankJob:
    if body.candidates is not None and len(body.candidates) > settings.max_candidates:
        raise too_many(f"{where}candidates", len(body.candidates), settings.max_candidates)
    n = body.num_candidates if body.num_candidates is not None else settings.num_candidates
    if body.candidates is None and n > settings.max_candidates:
        raise too_many(f"{where}num_candidates", n, settings.max_candidates)
    weights = body.weights.model_dump(exclude_none=True) if body.weights is not None else None
    return RankJob(
        user_id=body.user_id,
        history=to_history(body.history),
        candidates=to_candidates(body.candidates),
        k=body.k if body.k is not None else settings.top_k,
        num_candidates=n,
        modes=modes_tuple(body.modes),
        weights=weights or None,
        use_hints=body.use_hints,
        where=where,
    )
