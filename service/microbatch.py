"""Micro-batching in front of the engine, with a bounded queue.

Concurrent requests wait up to ``max_wait_s`` for company and go through the engine
together (up to ``max_requests`` per batch), so one forward batch serves several users.
One worker runs batches one after another in a thread: the model is one shared resource
and the event loop stays free. A *job* is what one HTTP call submitted (one request, or a
whole /v1/rank/batch); jobs are never split, so a batch call keeps its own shared batch.

The queue is bounded in requests (not jobs): when full, ``submit`` raises QueueFull at
once, and the caller answers 503 with Retry-After instead of letting latency grow without
bound. A job whose caller gave up (timeout) before it started is dropped unrun.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")


class QueueFull(RuntimeError):
    def __init__(self, queued: int, limit: int, retry_after_s: int) -> None:
        super().__init__(f"ranking queue is full ({queued} requests waiting, limit {limit}); "
                         f"retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


@dataclass
class _Job(Generic[Req, Res]):
    requests: list[Req]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchOutcome(Generic[Res]):
    results: list[Res]
    queue_s: float  # time the job waited before its batch started
    batch_size: int  # requests in the engine batch it ran in


class MicroBatcher(Generic[Req, Res]):
    def __init__(
        self,
        run_batch: Callable[[list[Req]], list[Res]],
        *,
        enabled: bool,
        max_wait_s: float,
        max_requests: int,
        queue_max: int,
        metrics: ServiceMetrics,
    ) -> None:
        self._run_batch = run_batch
        self.enabled = enabled
        self.max_wait_s = max_wait_s if enabled else 0.0
        self.max_requests = max_requests if enabled else 1
        self.queue_max = queue_max
        self.metrics = metrics
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # requests in _jobs
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._batch_s = 1.0  # running mean of batch duration, for Retry-After

    @property
    def depth(self) -> int:
        return self._queued

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._loop(), name="recranker-microbatcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("service is shutting down"))
        self._set_depth(0)

    def submit(self, requests: Sequence[Req]) -> asyncio.Future:
        """Enqueue one job; the future resolves to a BatchOutcome. Raises QueueFull."""
        if not requests:
            raise ValueError("submit needs at least one request")
        if self._queued + len(requests) > self.queue_max:
            per_batch = max(1, self.max_requests)
            retry = max(1, math.ceil(self._batch_s * (1 + self._queued / per_batch)))
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self._queued, self.queue_max, retry)
        job = _Job(list(requests), asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._set_depth(self._queued + len(job.requests))
        self._wakeup.set()
        return job.future

    def _set_depth(self, n: int) -> None:
        self._queued = n
        self.metrics.queue_depth.set(n)

    def _pop(self) -> _Job:
        job = self._jobs.popleft()
        self._set_depth(self._queued - len(job.requests))
        return job

    async def _wait_for_job(self, timeout: float | None) -> bool:
        while not self._live_jobs_waiting():
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        return True

    def _live_jobs_waiting(self) -> bool:
        while self._jobs and self._jobs[0].future.done():  # caller timed out: drop unrun
            self._pop()
        return bool(self._jobs)

    async def _collect(self) -> list[_Job]:
        await self._wait_for_job(None)
        batch = [self._pop()]
        size = len(batch[0].requests)
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_requests:
            left = deadline - time.perf_counter()
            if not self._live_jobs_waiting() and (left <= 0 or not await self._wait_for_job(left)):
                break
            if size + len(self._jobs[0].requests) > self.max_requests:
                break  # the next job would overflow the batch: it starts the next one
            job = self._pop()
            batch.append(job)
            size += len(job.requests)
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            batch = [j for j in batch if not j.future.done()]
            if not batch:
                continue
            requests = [r for j in batch for r in j.requests]
            started = time.perf_counter()
            self.metrics.batch_size.observe(len(requests))
            self.metrics.inflight.set(len(requests))
            try:
                results = await asyncio.to_thread(self._run_batch, requests)
                if len(results) != len(requests):
                    raise RuntimeError(f"batch runner returned {len(results)} results for {len(requests)} requests")
            except Exception as e:  # noqa: BLE001 - handed to every waiting caller, which maps it
                log.exception("engine batch of %d requests failed", len(requests))
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            finally:
                self.metrics.inflight.set(0)
                elapsed = time.perf_counter() - started
                self._batch_s = 0.8 * self._batch_s + 0.2 * elapsed
            pos = 0
            for j in batch:
                n = len(j.requests)
                if not j.future.done():
                    j.future.set_result(BatchOutcome(results[pos:pos + n], started - j.enqueued, len(requests)))
                pos += n
