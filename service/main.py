"""The app factory. ``create_app(settings)`` builds a fresh app with its own metrics
registry; its lifespan loads the resources (or takes shared ones), connects the user store,
and starts the micro-batcher. Nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from stack.settings import Settings
from service.microbatch import MicroBatcher
from service.cache import ResponseCache
from service.catalog import Catalog
from service.deps import AppState
from service.error_shapes import ErrorShape
from service.errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import RequestBodyMiddleware, RequestMetricsMiddleware
from service.pipeline import RankingService
from service.resources import Resources, load_resources
from service.routes import batch, events, health, rank, rerank, tei
from service.store import MemoryStore, RedisStore, UserStore

log = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "recranker:"

DESCRIPTION = """\
Top-k recommendation with an instruction-tuned LLM as the ranker (RecRanker, Luo et al. 2023):
a conventional backbone retrieves candidates, the LLM scores them pointwise, pairwise and
listwise, and a hybrid ensemble orders them.

Authentication: when `RECRANKER_API_KEY` is set, every ranking and events call needs the key,
as `X-API-Key: <key>` or `Authorization: Bearer <key>` (what the Cohere SDK and TEI clients send).
`/healthz`, `/readyz` and `/metrics` stay open for probes and scrapers.

Client-compatible routes: `/v1/rerank` and `/v2/rerank` in Cohere's shape (`cohere.Client` and
`cohere.ClientV2` work unchanged with `base_url` pointing here), `POST /rerank` in Hugging Face
text-embeddings-inference's shape.

Errors are `{"detail": "<what is wrong>"}`; on the Cohere routes `{"message": ...}` (400 for an
invalid request) and on the TEI route `{"error": ..., "error_type": ...}`, as those clients read them.
"""


def make_store(settings: Settings, key_prefix: str) -> UserStore:
    if settings.redis_url:
        return RedisStore.from_url(settings.redis_url, prefix=key_prefix, history_max=settings.user_history_max)
    return MemoryStore(history_max=settings.user_history_max)


def create_app(settings: Settings, *, resources: Resources | None = None,
               key_prefix: str = DEFAULT_KEY_PREFIX) -> FastAPI:
    """A new app. ``resources`` lets several apps share one loaded model (tests, embedding);
    ``key_prefix`` namespaces this app's Redis keys."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        res = resources if resources is not None else await asyncio.to_thread(load_resources, settings)
        store = make_store(settings, key_prefix)
        catalog = Catalog(res.dataset, res.split, res.generator, settings.user_history_max)
        batcher = MicroBatcher(res.ranker.rank_many, enabled=settings.microbatch,
                               max_wait_s=settings.microbatch_max_wait_ms / 1000,
                               max_requests=settings.microbatch_max_requests,
                               queue_max=settings.queue_max, metrics=metrics,
                               admit_within_s=settings.request_timeout_s if settings.admission else None)
        ranking = RankingService(catalog=catalog, store=store, cache=ResponseCache(store, settings.cache_ttl_s, metrics),
                                 batcher=batcher, ranker=res.ranker, served=res.served, metrics=metrics,
                                 request_timeout_s=settings.request_timeout_s)
        batcher.start()
        # the in-process engine's cache; vLLM keeps its own (its /metrics reports it)
        metrics.prefix_cache.stats = lambda: getattr(getattr(res.ranker.engine, "prefix_cache", None), "stats", None)
        app.state.live = AppState(res, store, catalog, batcher, ranking)
        log.info("serving %s (adapter %s), backbone %s, store %s, microbatch %s",
                 res.served.model, res.served.adapter, res.served.backbone, store.kind, settings.microbatch)
        try:
            yield
        finally:
            app.state.live = None
            metrics.prefix_cache.stats = lambda: None
            await batcher.stop()
            await store.close()

    # /docs and /redoc load Swagger UI and ReDoc from files shipped in the fastapi-offline
    # wheel (served under /static-offline-docs), not from a CDN: they work without internet
    # (validatorUrl None: Swagger UI would otherwise fetch a validity badge from swagger.io)
    app = FastAPIOffline(title="RecRanker", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None})
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.live = None
    install_error_handlers(app)
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)  # added last = outermost: sees 413/415s too
    shapes: dict[str, ErrorShape] = {}
    for module in (rank, batch, rerank, tei, events, health):
        app.include_router(module.router)
        shape = getattr(module, "ERROR_SHAPE", None)
        if shape is not None:
            shapes.update({route.path: shape for route in module.router.routes})
    app.state.error_shapes = shapes  # read by the error handlers and the body-size middleware
    return app
