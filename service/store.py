"""User state (recent interactions) and the response cache's key-value space.

Two implementations of one interface: Redis (shared between replicas, survives restarts)
and an in-process store for a single embedded process (no RECRANKER_REDIS_URL).

A user's *state version* is a hash of the stored event list, so it changes with every
append (and with trimming), needs no separate counter that could drift from the list,
and stays consistent if Redis is flushed.

Redis calls are short-timed and never retried inline; after a failure the store refuses
calls for ``cooldown_s`` (a small circuit breaker), so a dead Redis costs each request
microseconds, not a connect timeout. Callers catch StoreError and go on without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")
EMPTY_VERSION = "0"


class StoreError(RuntimeError):
    """The user store (Redis) could not be reached or answered in time."""


@dataclass(frozen=True)
class StoredEvent:
    item_id: str
    rating: float | None
    timestamp: int
    title: str | None = None  # only for items outside the catalog

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, raw: str | bytes) -> StoredEvent:
        d = json.loads(raw)
        return cls(str(d["item_id"]), d.get("rating"), int(d["timestamp"]), d.get("title"))


@dataclass(frozen=True)
class UserState:
    events: tuple[StoredEvent, ...]  # oldest first, at most history_max
    version: str  # changes whenever the list changes


def state_from_raw(raw: Sequence[str | bytes]) -> UserState:
    if not raw:
        return UserState((), EMPTY_VERSION)
    h = hashlib.sha256()
    for r in raw:
        h.update(r if isinstance(r, bytes) else r.encode())
        h.update(b"\n")
    return UserState(tuple(StoredEvent.decode(r) for r in raw), h.hexdigest()[:16])


class UserStore(ABC):
    kind: str

    @abstractmethod
    async def append_events(self, user_id: str, events: Sequence[StoredEvent]) -> UserState:
        """Append (oldest first), keep the newest ``history_max``; return the new state."""

    @abstractmethod
    async def get_state(self, user_id: str) -> UserState: ...

    @abstractmethod
    async def cache_get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def cache_set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreError unless the backend answers now (bypasses the circuit breaker)."""

    async def close(self) -> None:
        return None


class MemoryStore(UserStore):
    """Single-process store. Event loop only: no awaits inside critical sections, so no lock."""

    kind = "memory"

    def __init__(self, history_max: int, cache_max_entries: int = 10_000) -> None:
        self.history_max = history_max
        self.cache_max_entries = cache_max_entries
        self._events: dict[str, deque[str]] = {}
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expiry, value)

    async def append_events(self, user_id: str, events: Sequence[StoredEvent]) -> UserState:
        q = self._events.setdefault(user_id, deque(maxlen=self.history_max))
        q.extend(e.encode() for e in events)
        return state_from_raw(list(q))

    async def get_state(self, user_id: str) -> UserState:
        return state_from_raw(list(self._events.get(user_id, ())))

    async def cache_get(self, key: str) -> bytes | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return hit[1]

    async def cache_set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._cache[key] = (time.monotonic() + ttl_s, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_max_entries:
            self._cache.popitem(last=False)

    async def ping(self) -> None:
        return None


class RedisStore(UserStore):
    kind = "redis"

    def __init__(self, client, *, prefix: str, history_max: int, timeout_s: float = 0.25,
                 cooldown_s: float = 2.0) -> None:
        self._r = client
        self.prefix = prefix
        self.history_max = history_max
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self.last_error: str | None = None

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "recranker:", history_max: int, timeout_s: float = 0.25,
                 cooldown_s: float = 2.0) -> RedisStore:
        # redis-py retries connection errors 3 times with backoff by default: a request
        # must not wait on that, the breaker below handles a down server instead.
        client = redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0))
        return cls(client, prefix=prefix, history_max=history_max, timeout_s=timeout_s, cooldown_s=cooldown_s)

    def _events_key(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:events"

    def _cache_key(self, key: str) -> str:
        return f"{self.prefix}cache:{key}"

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]], *, force: bool = False) -> T:
        if not force and time.monotonic() < self._down_until:
            raise StoreError(f"redis unavailable ({self.last_error}); retrying after a {self.cooldown_s:g}s pause")
        try:
            result = await asyncio.wait_for(fn(), self.timeout_s * 2)
        except (OSError, asyncio.TimeoutError, RedisError) as e:
            self._down_until = time.monotonic() + self.cooldown_s
            self.last_error = f"{op}: {type(e).__name__}: {e}".strip()
            log.warning("redis %s failed: %s", op, e)
            raise StoreError(f"redis unavailable ({self.last_error})") from e
        self._down_until = 0.0
        return result

    async def append_events(self, user_id: str, events: Sequence[StoredEvent]) -> UserState:
        key = self._events_key(user_id)

        async def run():
            async with self._r.pipeline(transaction=True) as p:  # MULTI/EXEC: append+trim+read atomically
                p.rpush(key, *(e.encode() for e in events))
                p.ltrim(key, -self.history_max, -1)
                p.lrange(key, 0, -1)
                return (await p.execute())[-1]

        return state_from_raw(await self._call("append", run))

    async def get_state(self, user_id: str) -> UserState:
        key = self._events_key(user_id)
        return state_from_raw(await self._call("get", lambda: self._r.lrange(key, 0, -1)))

    async def cache_get(self, key: str) -> bytes | None:
        return await self._call("cache_get", lambda: self._r.get(self._cache_key(key)))

    async def cache_set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._call("cache_set", lambda: self._r.set(self._cache_key(key), value, ex=ttl_s))

    async def ping(self) -> None:
        await self._call("ping", self._r.ping, force=True)

    async def close(self) -> None:
        await self._r.aclose()

