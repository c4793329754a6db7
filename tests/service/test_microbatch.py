"""The micro-batcher on its own: batching, the bounded queue, dropped jobs.

The batch function here records what it was given and sleeps like an engine would; the
service-level tests run the same batcher with the real model.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.microbatch import MicroBatcher, QueueFull
from service.metrics import ServiceMetrics


class Recorder:
    def __init__(self, delay_s: float = 0.05) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, reqs: list[int]) -> list[int]:
        time.sleep(self.delay_s)
        with self.lock:
            self.batches.append(list(reqs))
        return [r * 10 for r in reqs]


def _batcher(rec, **kw) -> MicroBatcher[int, int]:
    opts = dict(enabled=True, max_wait_s=0.02, max_requests=4, queue_max=16, metrics=ServiceMetrics())
    opts.update(kw)
    return MicroBatcher(rec, **opts)


async def _submit_all(b, jobs):
    b.start()
    try:
        outs = await asyncio.gather(*(b.submit(j) for j in jobs))
    finally:
        await b.stop()
    return outs


def test_concurrent_requests_share_batches_up_to_the_limit():
    rec = Recorder()
    outs = asyncio.run(_submit_all(_batcher(rec), [[i] for i in range(6)]))
    assert [o.results for o in outs] == [[i * 10] for i in range(6)]
    assert [len(b) for b in rec.batches] == [4, 2]
    assert all(o.batch_size in (4, 2) for o in outs)


def test_disabled_runs_each_request_alone():
    rec = Recorder(delay_s=0.01)
    outs = asyncio.run(_submit_all(_batcher(rec, enabled=False), [[i] for i in range(3)]))
    assert [len(b) for b in rec.batches] == [1, 1, 1]
    assert [o.results for o in outs] == [[0], [10], [20]]


def test_a_multi_request_job_is_never_split():
    rec = Recorder(delay_s=0.01)
    outs = asyncio.run(_submit_all(_batcher(rec, max_requests=2), [[1, 2, 3], [4]]))
    assert rec.batches == [[1, 2, 3], [4]]
    assert outs[0].results == [10, 20, 30]


def test_full_queue_raises_at_once_and_counts():
    async def run():
        m = ServiceMetrics()
        b = _batcher(Recorder(delay_s=0.2), queue_max=2, enabled=False, metrics=m)
        b.start()
        first = b.submit([1])
        await asyncio.sleep(0.05)  # the worker takes it: the queue is empty again
        waiting = [b.submit([2]), b.submit([3])]
        with pytest.raises(QueueFull) as exc:
            b.submit([4])
        assert exc.value.retry_after_s >= 1 and "limit 2" in str(exc.value)
        assert m.queue_depth._value.get() == 2
        results = [(await f).results for f in [first, *waiting]]
        await b.stop()
        return results, m.rejected.labels("queue_full")._value.get()

    results, rejected = asyncio.run(run())
    assert results == [[10], [20], [30]] and rejected == 1


def test_a_job_whose_caller_gave_up_is_not_run():
    async def run():
        rec = Recorder(delay_s=0.1)
        b = _batcher(rec, enabled=False)
        b.start()
        running = b.submit([1])
        await asyncio.sleep(0.02)
        abandoned = b.submit([2])
        abandoned.cancel()
        kept = b.submit([3])
        await running
        await kept
        await b.stop()
        return rec.batches

    assert asyncio.run(run()) == [[1], [3]]


def test_a_failing_batch_fails_its_callers_only():
    calls = []

    def flaky(reqs):
        calls.append(list(reqs))
        if reqs == [1]:
            raise RuntimeError("boom")
        return reqs

    async def run():
        b = _batcher(flaky, enabled=False)
        b.start()
        bad, good = b.submit([1]), b.submit([2])
        with pytest.raises(RuntimeError, match="boom"):
            await bad
        assert (await good).results == [2]
        await b.stop()

    asyncio.run(run())
    assert calls == [[1], [2]]
