"""Pure ASGI middleware: request latency per endpoint, and the request body size limit.

Pure ASGI (not BaseHTTPMiddleware) so the route template FastAPI puts in the scope is
visible after the call, and bodies can be refused before anything parses them.
"""

from __future__ import annotations

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


class BodySizeLimitMiddleware:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while reading.

    The body is buffered (bounded by the limit) and replayed to the app, so a chunked
    upload without Content-Length is cut off at the limit too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, receive, send, int(length))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # client went away: let the app see the disconnect
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._reject(scope, receive, send, size)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        detail = f"request body is {size} bytes (or more); the limit is {self.max_bytes} bytes"
        # before routing: the shape is chosen by path, as the route itself would
        await render(scope, Problem(413, detail, "too_large"))(scope, receive, send)
