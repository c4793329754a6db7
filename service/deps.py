"""Dependencies handed to routes as ``Annotated`` aliases; tests swap any of them with
``app.dependency_overrides[get_x] = ...``.

Everything heavy lives on ``app.state.live`` (an AppState built in the lifespan); the
settings and metrics live on ``app.state`` from creation, so /healthz and /metrics answer
even before the resources are loaded.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from stack.settings import Settings
from service.microbatch import MicroBatcher
from service.catalog import Catalog
from service.errors import ServiceError
from service.metrics import ServiceMetrics
from service.pipeline import RankingService
from service.resources import Resources
from service.store import UserStore

API_KEY_HEADER = "X-API-Key"


@dataclass
class AppState:
    resources: Resources
    store: UserStore
    catalog: Catalog
    batcher: MicroBatcher
    ranking: RankingService


def app_settings(request: Request) -> Settings:
    """The settings of the app serving this request (a FastAPI dependency)."""
    return request.app.state.settings


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def get_app_state(request: Request) -> AppState:
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise ServiceError(503, "service is starting: model and index are not loaded yet", {"Retry-After": "5"})
    return live


def get_ranking(state: Annotated[AppState, Depends(get_app_state)], request: Request) -> RankingService:
    # bound to this request's connection: a client that leaves cancels its engine work
    return state.ranking.for_client(request.is_disconnected)


def get_catalog(state: Annotated[AppState, Depends(get_app_state)]) -> Catalog:
    return state.catalog


def get_store(state: Annotated[AppState, Depends(get_app_state)]) -> UserStore:
    return state.store


_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="Required on the ranking routes when RECRANKER_API_KEY is set.")
# What the Cohere SDK and TEI clients send: `Authorization: Bearer <key>`.
_bearer = HTTPBearer(auto_error=False, description="The same key as a bearer token (Cohere SDK, TEI clients).")
KEY_HEADERS = f"{API_KEY_HEADER} or Authorization: Bearer"


def require_api_key(
    settings: Annotated[Settings, Depends(app_settings)],
    key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Either header carries the key; X-API-Key is read first when both are sent."""
    if not settings.api_key:  # unset or empty (compose passes "" when no key is configured)
        return
    if key is None and bearer is not None:
        key = bearer.credentials
    challenge = {"WWW-Authenticate": "Bearer"}
    if key is None:
        raise ServiceError(401, f"missing API key: send {KEY_HEADERS} <key>", challenge)
    # constant-time comparison: response timing must not reveal how much of the key matched
    if not hmac.compare_digest(key.encode(), settings.api_key.encode()):
        raise ServiceError(401, "invalid API key", challenge)


SettingsDep = Annotated[Settings, Depends(app_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
AppStateDep = Annotated[AppState, Depends(get_app_state)]
RankingDep = Annotated[RankingService, Depends(get_ranking)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
StoreDep = Annotated[UserStore, Depends(get_store)]
