"""Pure ASGI middleware: request latency per endpoint, and the request body checks
(Content-Type, size limit, read deadline).

Pure ASGI (not BaseHTTPMiddleware) so the route template FastAPI puts in the scope is
visible after the call, and bodies can be refused before anything parses them.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.error_shapes import Problem, render
from service.metrics import ServiceMetrics


class RequestMetricsMiddleware:
    """Observes recranker_request_duration_seconds{endpoint, method, status}.

    The endpoint label is the route template ("/v1/rank"), never the raw path, and
    "unmatched" for 404s on unknown paths, so scanners cannot blow up the label set.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(endpoint, scope["method"], str(status)).observe(
                time.perf_counter() - start)


BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Bounds on what a refused request may still cost: its body is read and discarded (so the
# client, which may be busy sending it, can read the answer instead of a reset) up to this
# much and this long; past either, the answer goes out with Connection: close.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 10.0


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class RequestBodyMiddleware:
    """Checks a request body before anything parses it:

    - 415 when a Content-Type is given and is not JSON (no Content-Type: parsed as JSON);
    - 413 over ``max_bytes``, by Content-Length up front, else while reading the stream
      (a chunked upload is cut off at the limit too);
    - 408 when the body takes longer than ``timeout_s`` to arrive (a slow client holds a
      connection, not the service).

    A refused body is drained (bounded by DRAIN_MAX_BYTES / DRAIN_MAX_S) before the answer
    so that clients that send the whole body before reading (Python's http.client, many
    others) read the status instead of a connection reset. An accepted body is buffered
    (bounded by the limit) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            body = await self._read(headers, receive)
        except _Refused as r:
            drained = await self._drain(receive, headers, r.status)
            await _answer(scope, receive, send, r.status, r.detail, close=not drained)
            return
        if body is None:  # the client went away before sending it all: nobody to answer
            return
        if b"content-type" not in headers:  # no type given: read it as JSON, the only type served
            scope = {**scope, "headers": [*scope.get("headers", []), (b"content-type", b"application/json")]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        ctype = headers.get(b"content-type")
        if ctype is not None and not _is_json(ctype):
            shown = ctype.decode("latin-1")[:100]
            raise _Refused(415, f"unsupported Content-Type '{shown}': send the body as JSON with "
                                "Content-Type: application/json")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise _Refused(413, self._too_big(int(length)))
        chunks, size = [], 0
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise _Refused(408, f"request body not received within {self.timeout_s:g}s "
                                    f"({size} bytes arrived): send it at once") from None
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                raise _Refused(413, self._too_big(size))
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_big(self, size: int) -> str:
        return f"request body is {size} bytes (or more); the limit is {self.max_bytes} bytes"

    @staticmethod
    async def _drain(receive: Receive, headers: dict[bytes, bytes], status: int) -> bool:
        """Read and discard the rest of the body; True when all of it was read."""
        if status == 408:
            return False  # a slow sender would keep us here: answer and close
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > DRAIN_MAX_BYTES:
            return False
        read, deadline = 0, time.monotonic() + DRAIN_MAX_S
        while read <= DRAIN_MAX_BYTES:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return False
            if message["type"] != "http.request":
                return False
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


_KIND = {408: "invalid", 413: "too_large", 415: "invalid"}


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, detail: str, *, close: bool) -> None:
    """The refusal in the error shape of the route the request was for (chosen by path:
    this runs before routing), with Connection: close when part of the body is unread."""
    headers = {"connection": "close"} if close else None  # the connection cannot carry another request
    await render(scope, Problem(status, detail, _KIND.get(status, "other"), headers))(scope, receive, send)
