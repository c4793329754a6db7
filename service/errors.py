"""Domain errors map to statuses here; the body is ``{"detail": "<what is wrong>"}`` on the
service's own routes and the client's own shape on the client-compatible ones
(service/error_shapes.py: Cohere ``{"message"}``, TEI ``{"error", "error_type"}``).

| error                                  | status |
|----------------------------------------|--------|
| malformed JSON, wrong type, bad value  | 422 (names the field) |
| unknown candidate / history item       | 422 (names the id and where it was) |
| unknown user without history           | 404 |
| missing or wrong API key               | 401 |
| body over RECRANKER_MAX_BODY_BYTES     | 413 (the body is drained first, bounded) |
| Content-Type given and not JSON        | 415 |
| body not sent within RECRANKER_BODY_TIMEOUT_S | 408 |
| all weights that count are 0           | 422 |
| ranking queue full                     | 503 + Retry-After |
| user store down (POST /v1/events only) | 503 + Retry-After |
| resources not loaded yet               | 503 |
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.microbatch import QueueFull
from service.catalog import DuplicateItem, UnknownItem, UnknownUser
from service.error_shapes import Kind, Problem, render
from service.store import StoreError

log = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 5
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ServiceError(Exception):
    """An error with an HTTP status and a message for the client."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None,
                 kind: Kind | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.kind: Kind = kind or _KINDS.get(status, "other")


_KINDS: dict[int, Kind] = {401: "auth", 404: "not_found", 413: "too_large", 422: "invalid", 503: "unavailable"}


def too_many(what: str, got: int, limit: int) -> ServiceError:
    return ServiceError(422, f"{what}: {got} given, the limit is {limit}", kind="too_many")


def error_response(request: Request, status: int, detail: str, headers: dict[str, str] | None = None,
                   kind: Kind | None = None) -> JSONResponse:
    """The error in the shape of the route the request is for."""
    return render(request.scope, Problem(status, detail, kind or _KINDS.get(status, "other"), headers))


def _is_tag(part: Any) -> bool:
    """Union member tags pydantic puts in locations ('str', 'CandidateIn', 'function-before[...]')."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part[:1].isupper())


def _is_model_tag(part: str) -> bool:
    return bool(re.search(r"(^|[\[, ])[A-Z]\w*\]*$", part))


def _drop_union_noise(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep only the union branch the client meant: the object branch when they sent an
    object, the scalar (id string) branch otherwise."""
    def branch(e: dict[str, Any]) -> tuple[tuple, str | None]:
        loc = tuple(e.get("loc", ()))
        for n, part in enumerate(loc):
            if _is_tag(part):
                return loc[:n], ("object" if _is_model_tag(part) else "scalar")
        return loc, None

    scalar_bases = {branch(e)[0] for e in errors if branch(e)[1] == "scalar"}
    kept = []
    for e in errors:
        base, kind = branch(e)
        if kind == "scalar" and isinstance(e.get("input"), dict):
            continue  # they sent an object: "should be a valid string" is noise
        if kind == "object" and e.get("type") == "model_type" and base in scalar_bases:
            continue  # they sent a scalar: "should be an object" is noise
        kept.append(e)
    return kept


def _field(loc: Sequence[Any], last_is_field: bool = False) -> str:
    """('body', 'requests', 0, 'candidates', 2, 'CandidateIn', 'item_id') -> requests[0].candidates[2].item_id

    A key that is not an identifier (a client's own unknown field: "", "a b", "Weights"
    would read as a union tag) is shown quoted, ["a b"], so the message still names it."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for n, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif last_is_field and n == len(parts) - 1:
            out += (f".{part}" if out else part) if _IDENT.fullmatch(part) else f"[{json.dumps(part)}]"
        elif _is_tag(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: dict[str, Any]) -> str:
    kind, loc, msg = err.get("type", ""), err.get("loc", ()), err.get("msg", "invalid")
    where = _field(loc, last_is_field=kind == "extra_forbidden")
    if kind == "json_invalid":
        pos = loc[1] if len(loc) > 1 else "?"
        reason = (err.get("ctx") or {}).get("error", "JSON decode error")
        return f"request body is not valid JSON (at character {pos}: {reason})"
    if kind == "missing" and not where:
        return "request body is missing: send a JSON object with Content-Type: application/json"
    if kind in ("model_attributes_type", "dict_type", "model_type") and not where:
        return "request body must be a JSON object"
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    if kind == "missing":
        return f"{where}: field required"
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _unparsable(cause: BaseException) -> str:
    """The JSON parser failed in a way FastAPI does not report as invalid JSON."""
    if isinstance(cause, RecursionError):
        return "request body is nested too deeply to parse (arrays or objects about 1000 levels deep)"
    if isinstance(cause, UnicodeDecodeError):
        return f"request body is not valid UTF-8 (at byte {cause.start})"
    return f"request body could not be parsed as JSON ({type(cause).__name__})"


def format_validation_errors(errors: Sequence[dict[str, Any]]) -> str:
    msgs: list[str] = []
    for e in _drop_union_noise(errors):
        m = _message(e)
        if m not in msgs:
            msgs.append(m)
    more = len(msgs) - MAX_LISTED_ERRORS
    text = "; ".join(msgs[:MAX_LISTED_ERRORS])
    return text + (f"; and {more} more" if more > 0 else "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, format_validation_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "error parsing the body"
            return error_response(request, 422, _unparsable(exc.__cause__))
        return error_response(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(request, exc.status, exc.detail, exc.headers, exc.kind)

    @app.exception_handler(UnknownUser)
    async def _user(request: Request, exc: UnknownUser) -> JSONResponse:
        return error_response(request, 404, str(exc))

    @app.exception_handler(UnknownItem)
    async def _item(request: Request, exc: UnknownItem) -> JSONResponse:
        return error_response(request, 422, str(exc))

    @app.exception_handler(DuplicateItem)
    async def _dup(request: Request, exc: DuplicateItem) -> JSONResponse:
        return error_response(request, 422, str(exc))

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(request, 503, str(exc), {"Retry-After": str(exc.retry_after_s)}, "overloaded")

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return error_response(request, 503, f"user store unavailable: {exc}", {"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, f"internal error ({type(exc).__name__}); see the service log",
                              kind="internal")
