"""One ranking request through the service: user state -> cache -> candidates -> engine
(micro-batched, with a deadline) -> response, with metrics at every stage.

Nothing here fails because of the user store or the cache: a store error becomes a
warning on the response and a metric; an engine failure or a missed deadline becomes a
degraded result in backbone order. Only the client's own mistakes (unknown user/item,
limits) and a full queue (or more queued work than the timeout allows) are errors.

A request that times out or whose client disconnects cancels its engine job: it leaves the
queue, or the running batch skips its remaining passes (service.microbatch).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ranker.ensemble import HintWeightsMissing
from ranker.ranker import Ranker, RankRequest
from ranker.types import Mode, RankResult
from service.microbatch import BatchOutcome, MicroBatcher
from service.cache import ResponseCache, cache_key
from service.catalog import Catalog, HistoryRef, ItemRef, Prepared, UnknownUser
from service.errors import ServiceError
from service.metrics import ServiceMetrics
from service.store import EMPTY_VERSION, StoreError, UserState, UserStore

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cached response shape changes
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there


@dataclass(frozen=True)
class ServedModel:
    """What answers, as reported in responses and part of every cache key."""

    model: str
    adapter: str | None
    adapter_revision: str | None
    backbone: str
    data_fingerprint: str
    candidate_order: str = "{}"  # JSON of what re-orders the backbone's candidates (recency), "{}" when nothing


@dataclass(frozen=True)
class RankJob:
    user_id: str
    history: list[HistoryRef] | None
    candidates: list[ItemRef] | None
    k: int
    num_candidates: int
    modes: tuple[Mode, ...]
    weights: dict[str, float] | None  # only the fields the client set
    use_hints: bool | None
    where: str = ""  # prefix for error messages ("requests[3].")
    candidates_field: str = "candidates"


@dataclass
class _Pending:
    job: RankJob
    started: float
    state: UserState
    warnings: list[str]
    key: str | None = None
    prepared: Prepared | None = None
    request: RankRequest | None = None
    cache_s: float = 0.0
    response: dict[str, Any] | None = None


class RankingService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        store: UserStore,
        cache: ResponseCache,
        batcher: MicroBatcher[RankRequest, RankResult],
        ranker: Ranker,
        served: ServedModel,
        metrics: ServiceMetrics,
        request_timeout_s: float,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.cache = cache
        self.batcher = batcher
        self.ranker = ranker
        self.served = served
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s
        # the ranker's own settings shape its answers too: processes configured differently
        # must not share cache entries through one Redis
        self._ranker_fingerprint = cache_key({"config": dataclasses.asdict(ranker.config),
                                              "weights": ranker.weight_set.to_dict()})
        self._disconnected: Callable[[], Awaitable[bool]] | None = None

    def for_client(self, disconnected: Callable[[], Awaitable[bool]]) -> RankingService:
        """This service for one HTTP request: while it waits for the engine it polls
        ``disconnected()`` (Starlette's ``request.is_disconnected``) and, once the client is
        gone, cancels the engine work nobody will receive. A shallow copy: everything else
        is shared."""
        view = copy.copy(self)
        view._disconnected = disconnected
        return view

    async def rank(self, job: RankJob) -> dict[str, Any]:
        return (await self.rank_many([job]))[0]

    async def rank_many(self, jobs: Sequence[RankJob]) -> list[dict[str, Any]]:
        """Responses (RankOut-shaped dicts) in job order; the misses share one engine job."""
        started = time.perf_counter()
        states = await asyncio.gather(*(self._user_state(j.user_id) for j in jobs))
        pending = [_Pending(j, started, st, warn) for j, (st, warn) in zip(jobs, states, strict=True)]
        await asyncio.gather(*(self._lookup(p) for p in pending))
        misses = [p for p in pending if p.response is None]
        for p in misses:  # client errors (unknown user/item) surface here, before any engine work
            self._prepare(p)
        to_rank = [p for p in misses if p.request is not None]
        if to_rank:
            results, queue_s, why = await self._run([p.request for p in to_rank])
            for p, res in zip(to_rank, results, strict=True):
                res, bad = self._finite(p.request, res)
                p.response = self._respond(p, res, queue_s, "non_finite" if bad else why)
        for p in misses:
            if p.response is None:  # nothing to rank (the user has seen the whole catalog)
                p.response = self._respond(p, RankResult(items=[], modes=()), 0.0, None)
        await asyncio.gather(*(self._store_in_cache(p) for p in misses))
        return [p.response for p in pending]

    # ---- stages -------------------------------------------------------------------------

    async def _user_state(self, user_id: str) -> tuple[UserState, list[str]]:
        try:
            return await self.store.get_state(user_id), []
        except StoreError as e:
            self.metrics.store_errors.labels("get").inc()
            return UserState((), EMPTY_VERSION), [f"user store unavailable, ranked without posted events: {e}"]

    def _key(self, p: _Pending) -> str:
        j, s = p.job, self.served
        return cache_key({
            "v": CACHE_FORMAT, "ranker": self._ranker_fingerprint, "model": s.model, "adapter": s.adapter, "revision": s.adapter_revision,
            "backbone": s.backbone, "order": s.candidate_order, "data": s.data_fingerprint, "user": j.user_id, "state": p.state.version,
            "history": [dataclasses.astuple(h) for h in j.history] if j.history is not None else None,
            "candidates": [dataclasses.astuple(c) for c in j.candidates] if j.candidates is not None else None,
            "num_candidates": j.num_candidates if j.candidates is None else None, "k": j.k, "modes": list(j.modes),
            "weights": j.weights, "hints": j.use_hints,
        })

    async def _lookup(self, p: _Pending) -> None:
        if not self.cache.enabled:
            return
        if p.warnings:  # a store that failed a read is not trusted for the cache: that lookup failed too
            self.metrics.cache.labels("error").inc()
            return
        t = time.perf_counter()
        p.key = self._key(p)
        hit = await self.cache.get(p.key)
        p.cache_s = time.perf_counter() - t
        if hit is not None and hit.get("user_id") == p.job.user_id:
            self.metrics.ranked.labels("cache").inc()
            self.metrics.observe_stages({"cache": p.cache_s})
            total = time.perf_counter() - p.started
            p.response = {**hit, "cached": True, "llm_calls": 0, "llm_tokens": 0, "warnings": [],
                          "timings": {"cache": p.cache_s, "total": total}}

    def _prepare(self, p: _Pending) -> None:
        j = p.job
        try:
            p.prepared = self.catalog.prepare(j.user_id, p.state.events, j.history, j.candidates, j.num_candidates,
                                              where=j.where, candidates_field=j.candidates_field)
        except UnknownUser:
            if p.warnings:  # the store could not be read: this user may well have events there
                where = f"{j.where.rstrip('.')}: " if j.where else ""
                raise StoreError(f"{where}cannot read the events of user {j.user_id!r}, who is not in the "
                                 "dataset; retry, or send a 'history'") from None
            raise
        limit = self.ranker.max_candidates
        if limit is not None and len(p.prepared.candidates) > limit:
            field = j.candidates_field if j.candidates is not None else "num_candidates"
            raise ServiceError(422, f"{j.where}{field}: the served adapter's catalogue prompt layout ranks at most "
                                    f"{limit} candidates per request, got {len(p.prepared.candidates)}; send at most "
                                    f"{limit} (or set RECRANKER_MAX_CANDIDATES={limit})")
        if p.prepared.candidates:
            weights = self._weights(j)
            if weights is not None:  # the client's weights, completed by the served ones
                _check_weights(weights, j)
            p.request = RankRequest(p.prepared.profile, p.prepared.candidates, j.modes, j.k, weights, j.use_hints)

    def _weights(self, j: RankJob):
        """The client's weights (completed by the served ones), or None for the served weights of
        the job's hint setting; hints off without hints-off weights is the client's 422."""
        hints = self.ranker.config.use_hints if j.use_hints is None else j.use_hints
        try:
            served = self.ranker.weight_set.for_hints(hints)
        except HintWeightsMissing as e:
            if not j.weights:
                raise ServiceError(422, f"{j.where}use_hints: {e}") from None
            served = self.ranker.weights  # the client chose weights: its fields win, the rest as served
        return dataclasses.replace(served, **j.weights) if j.weights else None

    async def _run(self, requests: list[RankRequest]) -> tuple[list[RankResult], float, str | None]:
        """(results, queue seconds, degraded kind): engine results, or backbone-order fallbacks
        past the deadline or after the client left. The ranker turns engine failures into
        degraded results itself."""
        cost = await asyncio.to_thread(self._estimate, requests) if self.batcher.admit_within_s is not None else 0
        future = self.batcher.submit(requests, cost)  # QueueFull / Overloaded propagate: 503
        try:
            ended = await self._wait(future)
        except asyncio.CancelledError:  # this handler was cancelled (shutdown): so is its work
            future.cancel()
            raise
        if ended == "done":
            try:
                outcome: BatchOutcome = future.result()
            except Exception as e:  # noqa: BLE001 - logged; the client still gets the backbone's order
                log.exception("ranking batch failed")
                reason = f"ranker error: {type(e).__name__}: {e}"
                return [self.ranker.fallback(r, reason) for r in requests], 0.0, "error"
            return outcome.results, outcome.queue_s, None
        future.cancel()  # leaves the queue; a running batch skips its remaining passes
        if ended == "timeout":
            reason = f"timeout: no LLM ranking within {self.request_timeout_s:g}s"
            return [self.ranker.fallback(r, reason) for r in requests], self.request_timeout_s, "timeout"
        self.metrics.disconnects.inc()
        return [self.ranker.fallback(r, "client disconnected") for r in requests], 0.0, "disconnect"

    async def _wait(self, future: asyncio.Future) -> str:
        """'done', 'timeout' or 'disconnect', whichever comes first (the future is left as is)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return "timeout"
            step = left if self._disconnected is None else min(left, DISCONNECT_POLL_S)
            done, _ = await asyncio.wait({future}, timeout=step)
            if done:
                return "done"
            if self._disconnected is not None and await self._disconnected():
                return "disconnect"

    def _estimate(self, requests: list[RankRequest]) -> int:
        """Forward tokens of the job, for admission; 0 for a request whose prompts cannot be
        built (the ranker degrades it without running the engine)."""
        total = 0
        for r in requests:
            try:
                total += self.ranker.estimate_tokens(r)
            except Exception:  # noqa: BLE001 - the ranker reports it when it runs the job
                pass
        return total

    def _finite(self, request: RankRequest, res: RankResult) -> tuple[RankResult, bool]:
        """(result, replaced): a result with a non-finite number anywhere is replaced by the
        backbone order, and any number still non-finite there (a backbone score) by null/0.
        JSON has no inf/NaN: a 2xx must never carry one (it would serialise as null)."""
        if _all_finite(res):
            return res, False
        log.error("non-finite scores from the ranker for user %s: serving the backbone order", request.user.user_id)
        fallback = self.ranker.fallback(request, "ranker produced non-finite scores")
        items = [dataclasses.replace(
            it, score=it.score if math.isfinite(it.score) else 0.0,
            backbone_score=it.backbone_score if it.backbone_score is None or math.isfinite(it.backbone_score) else None,
            mode_scores={m: v for m, v in it.mode_scores.items() if math.isfinite(v)}) for it in fallback.items]
        return dataclasses.replace(fallback, items=items), True

    def _respond(self, p: _Pending, res: RankResult, queue_s: float, why: str | None) -> dict[str, Any]:
        timings = {"cache": p.cache_s, "retrieve": p.prepared.retrieve_s if p.prepared else 0.0,
                   "queue": queue_s, **{k: v for k, v in res.timings.items() if k in ("prompt", "llm", "ensemble")}}
        timings["total"] = time.perf_counter() - p.started
        self._observe(res, timings, why)
        s = self.served
        return {
            "user_id": p.job.user_id,
            "items": [dataclasses.asdict(it) for it in res.items],
            "model": s.model, "adapter": s.adapter, "adapter_revision": s.adapter_revision, "backbone": s.backbone,
            "degraded": res.degraded, "degraded_reason": res.degraded_reason, "cached": False,
            "timings": timings, "llm_calls": res.llm_calls, "llm_tokens": res.forward_tokens,
            "label_mass": dict(res.label_mass), "warnings": p.warnings,
        }

    def _observe(self, res: RankResult, timings: dict[str, float], why: str | None) -> None:
        m = self.metrics
        m.observe_stages({k: v for k, v in timings.items() if k != "cache" or v > 0})
        m.llm_calls.inc(res.llm_calls)
        m.llm_tokens.inc(res.forward_tokens)
        for mode, mass in res.label_mass.items():
            m.label_mass.labels(mode).observe(mass)
        if res.degraded:
            m.degraded.labels(why or "engine").inc()
            m.ranked.labels("degraded").inc()
        else:
            m.ranked.labels("llm").inc()

    async def _store_in_cache(self, p: _Pending) -> None:
        resp = p.response
        if p.key is None or resp is None or resp["degraded"] or not resp["items"]:
            return  # a degraded answer must not outlive the outage that caused it
        stored = {k: v for k, v in resp.items() if k not in ("cached", "timings", "warnings")}
        await self.cache.put(p.key, stored)


def _all_finite(res: RankResult) -> bool:
    values = [v for it in res.items for v in (it.score, *it.mode_scores.values())]
    values += [it.backbone_score for it in res.items if it.backbone_score is not None]
    values += list(res.label_mass.values())
    return all(math.isfinite(v) for v in values)


def _check_weights(weights, job: RankJob) -> None:
    """422 when every weight that counts for this request is 0: the hybrid would be 0 for
    every item and the order arbitrary (here: the backbone's tie-break, silently)."""
    if weights.backbone == 0 and all(weights.of(m) == 0 for m in job.modes):
        raise ServiceError(422, f"{job.where}weights: the requested modes {list(job.modes)} and the backbone all "
                                "have weight 0: at least one must be > 0, or nothing orders the items")
