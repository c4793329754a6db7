"""How an error is written for each family of clients.

The service's own routes answer ``{"detail": "..."}``. The client-compatible routes answer
as the clients they serve expect, or those clients lose the message:

- Cohere shape (/v1/rerank, /v2/rerank): ``{"message": "..."}``, the field Cohere's API
  puts its error text in; an invalid request is 400 (Cohere's status for missing fields
  and invalid values, raised as ``cohere.errors.BadRequestError`` by the SDK) where the
  service's own routes say 422. Other statuses are unchanged; the SDK maps each of 401,
  404, 429, 500 and 503 to its own exception class.
- TEI shape (POST /rerank): ``{"error": "...", "error_type": "..."}`` with TEI's status
  for each error type (text-embeddings-inference's router): an empty ``texts`` is 400
  ``Empty``, too many texts 413 ``Validation``, overloaded 429 ``Overloaded``, not ready 503
  ``Unhealthy``; other client errors keep the service's status with ``Validation``.

A route picks its shape by path (``app.state.error_shapes``, filled in by create_app), so
errors raised before routing (the body size limit) get the same shape as those raised in
the route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi.responses import JSONResponse

# What went wrong, independent of how it is written; shapes choose statuses from it.
Kind = Literal["invalid", "empty", "too_many", "not_found", "auth", "too_large", "overloaded", "unavailable",
               "internal", "other"]


@dataclass(frozen=True)
class Problem:
    status: int
    detail: str
    kind: Kind = "other"
    headers: Mapping[str, str] | None = None


ErrorShape = Callable[[Problem], tuple[int, dict[str, Any]]]


def plain_shape(p: Problem) -> tuple[int, dict[str, Any]]:
    return p.status, {"detail": p.detail}


def cohere_shape(p: Problem) -> tuple[int, dict[str, Any]]:
    return (400 if p.status == 422 else p.status), {"message": p.detail}


# TEI's ErrorType -> status mapping (router/src/http/server.rs, `impl From<&ErrorType> for StatusCode`)
_TEI = {
    "empty": (400, "Empty"),
    "too_many": (413, "Validation"),
    "overloaded": (429, "Overloaded"),
    "unavailable": (503, "Unhealthy"),
}


def tei_shape(p: Problem) -> tuple[int, dict[str, Any]]:
    if p.kind == "internal":
        return p.status, {"error": p.detail, "error_type": "Backend"}
    status, error_type = _TEI.get(p.kind, (p.status, "Validation"))
    return status, {"error": p.detail, "error_type": error_type}


def shape_for(scope: Mapping[str, Any]) -> ErrorShape:
    """The shape of the route this request is for (the plain one when none is registered)."""
    state = getattr(scope.get("app"), "state", None)
    shapes: Mapping[str, ErrorShape] = getattr(state, "error_shapes", None) or {}
    route = scope.get("route")
    path = getattr(route, "path", None) or scope.get("path", "")
    return shapes.get(path, plain_shape)


def render(scope: Mapping[str, Any], problem: Problem) -> JSONResponse:
    status, body = shape_for(scope)(problem)
    headers = dict(problem.headers) if problem.headers else None
    if headers and status != 503 and status != 429:
        headers.pop("Retry-After", None)  # only meaningful on the statuses that ask to come back later
    return JSONResponse(body, status_code=status, headers=headers)
