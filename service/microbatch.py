"""Micro-batching in front of the engine, with a bounded queue.

Concurrent requests wait up to ``max_wait_s`` for company and go through the engine
together (up to ``max_requests`` per batch), so one forward batch serves several users.
One worker runs batches one after another in a thread: the model is one shared resource
and the event loop stays free. A *job* is what one HTTP call submitted (one request, or a
whole /v1/rank/batch); jobs are never split, so a batch call keeps its own shared batch.

The queue is bounded in requests (not jobs): when full, ``submit`` raises QueueFull at
once, and the caller answers 503 with Retry-After instead of letting latency grow without
bound.

Admission by estimated work: each job comes with its cost (the forward tokens the engine
will run for it), the worker measures the engine's throughput in the same unit, and a job
that could not be served within ``admit_within_s`` (the request timeout) behind the work
already queued and running is refused with Overloaded (503) before any work starts: an
answer that would arrive after its deadline is not worth computing.

Abandoned work stops: a job whose caller gave up (its future is cancelled: timeout or
client disconnect) leaves the queue at once, and a batch already running is told through
``is_cancelled(i)``, which the ranker checks between forward passes.
"""

from __future__ import annotations

import asyncio
import inspect
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


class Overloaded(QueueFull):
    """The work queued and running would take longer than a new job may wait."""

    def __init__(self, eta_s: float, limit_s: float, retry_after_s: int) -> None:
        RuntimeError.__init__(self, f"ranking engine overloaded: about {eta_s:.1f}s of queued work "
                              f"ahead of this request, over the {limit_s:g}s timeout; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


@dataclass
class _Job(Generic[Req, Res]):
    requests: list[Req]
    future: asyncio.Future
    cost: float = 0.0  # estimated engine work (forward tokens)
    enqueued: float = field(default_factory=time.perf_counter)
    # set on the event loop when the caller gives up; read by the worker thread (a plain
    # bool: one attribute read is atomic in CPython)
    abandoned: bool = False


@dataclass(frozen=True)
class BatchOutcome(Generic[Res]):
    results: list[Res]
    queue_s: float  # time the job waited before its batch started
    batch_size: int  # requests in the engine batch it ran in


class MicroBatcher(Generic[Req, Res]):
    def __init__(
        self,
        run_batch: Callable[..., list[Res]],
        *,
        enabled: bool,
        max_wait_s: float,
        max_requests: int,
        queue_max: int,
        metrics: ServiceMetrics,
        admit_within_s: float | None = None,
    ) -> None:
        """run_batch(requests) -> results; if it also takes ``is_cancelled`` (as
        Ranker.rank_many does) it is told which requests were abandoned while it runs.
        admit_within_s: refuse a job whose estimated wait plus own run exceeds this (None:
        admission by the queue bound only)."""
        self._run_batch = run_batch
        try:
            self._run_takes_cancel = "is_cancelled" in inspect.signature(run_batch).parameters
        except (TypeError, ValueError):
            self._run_takes_cancel = False
        self.admit_within_s = admit_within_s
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
        self._queued_cost = 0.0  # estimated work of the jobs in _jobs
        self._running_cost = 0.0  # estimated work of the batch now running
        self._running_since = 0.0
        self.cost_per_s: float | None = None  # measured engine throughput (cost units per second)

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
        self._queued_cost = 0.0
        self.metrics.queued_tokens.set(0)

    def submit(self, requests: Sequence[Req], cost: float = 0.0) -> asyncio.Future:
        """Enqueue one job of estimated ``cost``; the future resolves to a BatchOutcome.
        Cancelling the future abandons the job. Raises QueueFull (or Overloaded)."""
        if not requests:
            raise ValueError("submit needs at least one request")
        if self._queued + len(requests) > self.queue_max:
            per_batch = max(1, self.max_requests)
            retry = max(1, math.ceil(self._batch_s * (1 + self._queued / per_batch)))
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self._queued, self.queue_max, retry)
        eta = self.eta_s(cost)
        # with nothing ahead the job starts at once: refusing it would save nothing, and
        # running it re-measures the throughput (a stale low figure must not lock everyone out)
        if self.admit_within_s is not None and eta is not None and eta > self.admit_within_s and self._work_ahead():
            # retry when enough of the work ahead has drained for this job to fit
            retry = max(1, math.ceil(eta - self.admit_within_s))
            self.metrics.rejected.labels("overloaded").inc()
            raise Overloaded(eta, self.admit_within_s, retry)
        job = _Job(list(requests), asyncio.get_running_loop().create_future(), cost)
        job.future.add_done_callback(lambda f, job=job: self._on_done(job, f))
        self._jobs.append(job)
        self._set_depth(self._queued + len(job.requests))
        self._add_cost(cost)
        self._wakeup.set()
        return job.future

    def eta_s(self, cost: float = 0.0) -> float | None:
        """Estimated seconds until a new job of ``cost`` would be answered: the rest of the
        running batch, the queued jobs, then itself. None until a batch has been measured."""
        if not self.cost_per_s:
            return None
        running_left = 0.0
        if self._running_cost:
            running_left = max(0.0, self._running_cost - self.cost_per_s * (time.perf_counter() - self._running_since))
        return (running_left + self._queued_cost + cost) / self.cost_per_s

    def _work_ahead(self) -> bool:
        return bool(self._jobs) or self._running_cost > 0

    def _on_done(self, job: _Job, future: asyncio.Future) -> None:
        if not future.cancelled():
            return
        job.abandoned = True  # a running batch skips its remaining passes
        try:
            self._jobs.remove(job)  # still queued: leaves the queue now, not when it reaches the head
        except ValueError:
            return  # already taken by the worker
        self._set_depth(self._queued - len(job.requests))
        self._add_cost(-job.cost)
        self.metrics.abandoned.labels("queued").inc(len(job.requests))

    def _set_depth(self, n: int) -> None:
        self._queued = n
        self.metrics.queue_depth.set(n)

    def _add_cost(self, delta: float) -> None:
        self._queued_cost = max(0.0, self._queued_cost + delta) if self._jobs else 0.0
        self.metrics.queued_tokens.set(self._queued_cost)

    def _pop(self) -> _Job:
        job = self._jobs.popleft()
        self._set_depth(self._queued - len(job.requests))
        self._add_cost(-job.cost)
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
            gone = sum(len(j.requests) for j in batch if j.future.cancelled())
            if gone:  # abandoned while the batch was being collected
                self.metrics.abandoned.labels("queued").inc(gone)
            batch = [j for j in batch if not j.future.done()]
            if not batch:
                continue
            requests = [r for j in batch for r in j.requests]
            owners = [j for j in batch for _ in j.requests]
            started = time.perf_counter()
            self._running_cost, self._running_since = sum(j.cost for j in batch), started
            self.metrics.batch_size.observe(len(requests))
            self.metrics.inflight.set(len(requests))
            self.metrics.engine_busy.set(1)
            try:
                if self._run_takes_cancel:
                    results = await asyncio.to_thread(self._run_batch, requests,
                                                      is_cancelled=lambda i: owners[i].abandoned)
                else:
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
                self.metrics.engine_busy.set(0)
                elapsed = time.perf_counter() - started
                self._batch_s = 0.8 * self._batch_s + 0.2 * elapsed
                self._measure(batch, elapsed)
            pos = 0
            for j in batch:
                n = len(j.requests)
                if not j.future.done():
                    j.future.set_result(BatchOutcome(results[pos:pos + n], started - j.enqueued, len(requests)))
                pos += n

    def _measure(self, batch: list[_Job], elapsed: float) -> None:
        """Update the engine's throughput from a finished batch. A batch cut short by
        abandoned jobs did less than its cost says, so it does not count."""
        cost, self._running_cost = self._running_cost, 0.0
        abandoned = [j for j in batch if j.abandoned]
        if abandoned:
            self.metrics.abandoned.labels("running").inc(sum(len(j.requests) for j in abandoned))
            return
        if cost <= 0 or elapsed <= 0:
            return
        rate = cost / elapsed
        # a running mean over the last few batches: follows load changes within seconds
        self.cost_per_s = rate if self.cost_per_s is None else 0.7 * self.cost_per_s + 0.3 * rate
        self.metrics.engine_tokens_per_s.set(self.cost_per_s)
