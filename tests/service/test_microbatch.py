"""The micro-batcher on its own: batching, the bounded queue, dropped jobs.

The batch function here records what it was given and sleeps like an engine would; the
service-level tests run the same batcher with the real model.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.microbatch import MicroBatcher, Overloaded, QueueFull
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


# ---- abandoned work stops; admission by estimated work (issue 14) ----------------------------


class Passes:
    """A fake engine that works in passes of ``pass_s`` and, like the ranker, asks
    ``is_cancelled`` before each pass and leaves cancelled requests out of it."""

    def __init__(self, passes: int = 20, pass_s: float = 0.05) -> None:
        self.n, self.pass_s = passes, pass_s
        self.log: list[list[int]] = []  # requests in each pass
        self.finished = threading.Event()

    def __call__(self, reqs: list[int], is_cancelled) -> list[int]:
        for _ in range(self.n):
            live = [r for i, r in enumerate(reqs) if not is_cancelled(i)]
            if not live:
                break
            self.log.append(live)
            time.sleep(self.pass_s)
        self.finished.set()
        return [r * 10 for r in reqs]


def test_a_running_batch_drops_a_cancelled_job_before_its_next_pass():
    engine = Passes()
    m = ServiceMetrics()

    async def run():
        b = _batcher(engine, max_wait_s=0.05, metrics=m)
        b.start()
        gone, kept = b.submit([1]), b.submit([2])
        await asyncio.sleep(0.2)  # a few passes in
        gone.cancel()
        cancelled_at = len(engine.log)
        out = await kept
        await b.stop()
        return cancelled_at, out

    cancelled_at, out = asyncio.run(run())
    assert out.results == [20] and out.batch_size == 2
    assert all(p == [1, 2] for p in engine.log[:cancelled_at - 1])
    assert all(p == [2] for p in engine.log[cancelled_at + 1:])  # at most the pass in flight still had it
    assert m.abandoned.labels("running")._value.get() == 1


def test_the_worker_goes_idle_within_a_pass_once_every_caller_gave_up():
    engine = Passes(passes=100, pass_s=0.05)  # 5 s of work if nobody stopped it
    m = ServiceMetrics()

    async def run():
        b = _batcher(engine, metrics=m)
        b.start()
        futures = [b.submit([1]), b.submit([2])]
        await asyncio.sleep(0.2)
        assert m.engine_busy._value.get() == 1
        t = time.perf_counter()
        for f in futures:
            f.cancel()
        while m.engine_busy._value.get() == 1:
            await asyncio.sleep(0.01)
        idle_after = time.perf_counter() - t
        await b.stop()
        return idle_after

    idle_after = asyncio.run(run())
    assert idle_after < 0.5 and len(engine.log) < 20  # not the 5 s the batch would have taken


def test_a_cancelled_queued_job_leaves_the_queue_at_once():
    m = ServiceMetrics()

    async def run():
        b = _batcher(Recorder(delay_s=0.3), enabled=False, metrics=m)
        b.start()
        running = b.submit([1], cost=10)
        await asyncio.sleep(0.05)
        middle, last = b.submit([2], cost=20), b.submit([3], cost=30)
        assert b.depth == 2 and m.queued_tokens._value.get() == 50
        middle.cancel()
        await asyncio.sleep(0)  # the done-callback runs on the loop
        depth, queued = b.depth, m.queued_tokens._value.get()
        await running
        await last
        await b.stop()
        return depth, queued

    depth, queued = asyncio.run(run())
    assert (depth, queued) == (1, 30)
    assert m.abandoned.labels("queued")._value.get() == 1


class Costly:
    """A fake engine running at 1000 cost units per second: request r costs r units."""

    def __call__(self, reqs: list[int]) -> list[int]:
        time.sleep(sum(reqs) / 1000)
        return reqs


def test_admission_refuses_work_that_could_not_finish_within_the_limit():
    m = ServiceMetrics()

    async def run():
        b = _batcher(Costly(), enabled=False, metrics=m, admit_within_s=0.5)
        b.start()
        assert b.eta_s(100) is None  # nothing measured yet: admitted on the queue bound alone
        await b.submit([100], cost=100)
        assert b.cost_per_s == pytest.approx(1000, rel=0.5)
        big = b.submit([1500], cost=1500)  # alone it would overrun too, but nothing is ahead: admitted
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as refused:  # behind ~1.4 s of work: its answer would come too late
            b.submit([100], cost=100)
        assert b.depth == 0
        await big
        after = b.submit([100], cost=100)  # the work ahead drained: admitted again
        await after
        await b.stop()
        return refused.value

    refused = asyncio.run(run())
    assert isinstance(refused, Overloaded) and refused.retry_after_s >= 1
    assert "overloaded" in str(refused) and "0.5s timeout" in str(refused)
    assert m.rejected.labels("overloaded")._value.get() == 1
