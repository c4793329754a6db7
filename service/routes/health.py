"""Probes and metrics. Deliberately open (no API key): orchestrators and Prometheus call
them without credentials, and they reveal no user data; restrict them at the network edge."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.deps import MetricsDep
from service.metrics import CONTENT_TYPE_LATEST
from service.schemas import HealthOut, ReadyOut
from service.store import StoreError

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, summary="Readiness: model, index and user store",
            responses={503: {"model": ReadyOut, "description": "A component is not ready; see components."}})
async def readyz(request: Request) -> JSONResponse:
    live = getattr(request.app.state, "live", None)
    if live is None:
        loading = {"ok": False, "detail": "loading"}
        components = {"model": loading, "index": loading, "store": loading}
    else:
        res = live.resources
        model = res.served.model + (f" + {res.served.adapter}" if res.served.adapter else " (base model)")
        components = {
            "model": {"ok": res.engine is not None, "detail": model},
            "index": {"ok": live.catalog.generator.n_items > 0,
                      "detail": f"exact index over {live.catalog.generator.n_items} items "
                                f"({_order(live.catalog.generator)})"},
            "store": await _store_status(live.store, request.app.state.metrics),
            # whether ranking runs the LLM at all: hybrid weights chosen "backbone only" skip it
            "llm": {"ok": True, "detail": _llm_detail(res.ranker)},
        }
        llm_used = res.ranker.weight_set.llm_used()
    ready = all(c["ok"] for c in components.values())
    body = {"ready": ready, "components": components}
    if live is not None:
        body["llm_used"] = llm_used
    return JSONResponse(body, status_code=200 if ready else 503)


def _llm_detail(ranker) -> str:
    """Which modes run per hint setting and why, and whether the served weights were
    chosen with this engine's numerics (not a readiness failure: a note to re-check)."""
    weights = ranker.weight_set
    unchecked = weights.scored_with_other_numerics(getattr(ranker.engine, "info", {}))
    return "; ".join([weights.describe(), *(f"{key}: {why}" for key, why in unchecked.items())])


async def _store_status(store, metrics) -> dict:
    if store.kind == "memory":
        return {"ok": True, "detail": "in-process store (RECRANKER_REDIS_URL not set)"}
    try:
        await store.ping()
    except StoreError as e:
        metrics.store_errors.labels("ping").inc()
        return {"ok": False, "detail": str(e)}
    return {"ok": True, "detail": "redis reachable"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
async def metrics(m: MetricsDep) -> Response:
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)


def _order(generator) -> str:
    """The backbone, and how its candidates are re-ordered when they are."""
    info = generator.info.get("recency")
    if not info:
        return generator.source
    return f"{generator.source}: re-ordered by co-likes with the last {info['window']} likes, weight {info['weight']:g}"
