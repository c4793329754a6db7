"""Response cache: a ranked answer is reused only while everything it depends on is equal.

The key covers the model and adapter revision, the backbone and data fingerprint, the
user's state version (changes with every stored event), the request's candidates or
retrieval size, history override, modes, k, weights and hints. A cache failure is a miss
plus an error count, never a failed request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from service.metrics import ServiceMetrics
from service.store import StoreError, UserStore

log = logging.getLogger(__name__)


def cache_key(parts: dict[str, Any]) -> str:
    """Stable hash of JSON-serialisable parts (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, store: UserStore, ttl_s: int, metrics: ServiceMetrics) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    async def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            raw = await self.store.cache_get(key)
        except StoreError:
            self.metrics.cache.labels("error").inc()
            self.metrics.store_errors.labels("cache_get").inc()
            return None
        if raw is None:
            self.metrics.cache.labels("miss").inc()
            return None
        try:
            value = json.loads(raw)
        except ValueError:  # written by another version, or corrupted: treat as a miss
            log.warning("unreadable cache entry %s: ignored", key[:12])
            self.metrics.cache.labels("error").inc()
            return None
        self.metrics.cache.labels("hit").inc()
        return value

    async def put(self, key: str, value: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            await self.store.cache_set(key, json.dumps(value, separators=(",", ":")).encode(), self.ttl_s)
        except StoreError:
            self.metrics.cache.labels("error").inc()
            self.metrics.store_errors.labels("cache_set").inc()
