"""The user store contract, run against the real Redis and the in-process store alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.store import EMPTY_VERSION, MemoryStore, RedisStore, StoredEvent, StoreError
from tests.service.conftest import CLOSED_PORT_URL, REDIS_URL, new_user


@pytest.fixture(params=["redis", "memory"])
def store(request, redis_prefix):
    if request.param == "memory":
        yield MemoryStore(history_max=3)
        return
    s = RedisStore.from_url(REDIS_URL, prefix=redis_prefix, history_max=3)
    yield s
    asyncio.run(s.close())


def ev(item: str, rating: float | None = 4.0, title: str | None = None) -> StoredEvent:
    return StoredEvent(item, rating, 1_700_000_000, title)


def test_append_keeps_order_trims_and_changes_version(store):
    async def run():
        user = new_user()
        empty = await store.get_state(user)
        assert empty.events == () and empty.version == EMPTY_VERSION
        s1 = await store.append_events(user, [ev("1"), ev("2", None, "New (2024)")])
        assert [e.item_id for e in s1.events] == ["1", "2"] and s1.events[1].title == "New (2024)"
        s2 = await store.append_events(user, [ev("3"), ev("4")])
        assert [e.item_id for e in s2.events] == ["2", "3", "4"]  # newest history_max kept
        assert len({EMPTY_VERSION, s1.version, s2.version}) == 3
        assert await store.get_state(user) == s2
        assert (await store.get_state(new_user())).events == ()  # users do not share state
        await close(store)

    asyncio.run(run())


def test_cache_round_trip_and_expiry(store):
    async def run():
        key = new_user()
        assert await store.cache_get(key) is None
        await store.cache_set(key, b'{"a": 1}', ttl_s=1)
        assert await store.cache_get(key) == b'{"a": 1}'
        await asyncio.sleep(1.1)
        assert await store.cache_get(key) is None
        await close(store)

    asyncio.run(run())


async def close(store):
    # redis.asyncio connections belong to the loop that made them: drop them before it ends
    if isinstance(store, RedisStore):
        await store._r.connection_pool.disconnect()


def test_redis_down_fails_fast_and_recovers_after_cooldown():
    async def run():
        store = RedisStore.from_url(CLOSED_PORT_URL, prefix="x:", history_max=3, cooldown_s=0.2)
        with pytest.raises(StoreError, match="redis unavailable"):
            await store.get_state("1")
        t = time.perf_counter()
        with pytest.raises(StoreError, match="retrying after"):
            await store.cache_get("k")  # breaker open: no connection attempt
        assert time.perf_counter() - t < 0.05
        with pytest.raises(StoreError):
            await store.ping()  # probes bypass the breaker and still see it down
        await store.close()

    asyncio.run(run())
