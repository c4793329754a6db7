"""Prometheus metrics of one app instance.

Each app owns its CollectorRegistry (no module-level collectors), so tests can build many
apps in one process. Names carry the ``recranker_`` prefix and base units (seconds);
labels are low-cardinality only (endpoint template, stage, mode, outcome), never a user or
item id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ranker.engines.prefix_cache import CacheStats

# From a cache hit (~1 ms) to a slow CPU LLM batch (tens of seconds).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
MASS_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
STAGES = ("cache", "retrieve", "queue", "prompt", "llm", "ensemble")
STORE_OPS = ("get", "append", "cache_get", "cache_set", "ping")  # the `op` label of recranker_store_errors_total
DEGRADED_REASONS = ("timeout", "error", "engine")  # pipeline: request timeout, batch exception, ranker fallback
RANK_SOURCES = ("llm", "cache", "degraded")
PREFIX_RESULTS = ("hit", "stem", "miss")  # the `result` label of recranker_prefix_cache_lookups_total

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics", "STAGES"]


class PrefixCacheCollector(Collector):
    """The in-process engine's prefix cache (``ranker.engines.prefix_cache``), read at scrape
    time: the engine keeps the counts, so nothing is copied on the request path. ``stats``
    returns them, or None (no engine loaded yet, or one without a cache: vLLM keeps its own),
    which exports zeros."""

    def __init__(self) -> None:
        self.stats: Callable[[], CacheStats | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        s = self.stats() or CacheStats()
        lookups = CounterMetricFamily(
            "recranker_prefix_cache_lookups", "Prompt-prefix K/V lookups of the in-process engine by result: hit "
            "(the whole prefix), stem (the user's history only; the candidate list ran on top), miss.",
            labels=["result"])
        for result, n in zip(PREFIX_RESULTS, (s.hits, s.partial_hits, s.misses)):
            lookups.add_metric([result], n)
        yield lookups
        yield CounterMetricFamily("recranker_prefix_cache_evictions", "Prefix-cache entries dropped to stay "
                                  "within RECRANKER_PREFIX_CACHE_MB.", value=s.evictions)
        yield GaugeMetricFamily("recranker_prefix_cache_bytes", "Bytes of K/V the prefix cache holds.", value=s.bytes)
        yield GaugeMetricFamily("recranker_prefix_cache_entries", "Prefixes the prefix cache holds.", value=s.entries)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            "recranker_request_duration_seconds", "HTTP request latency by endpoint template.",
            ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_latency = Histogram(
            "recranker_stage_duration_seconds", "Time spent per ranking stage, per ranking request.",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.llm_calls = Counter("recranker_llm_calls", "LLM forward passes (or server requests).", registry=r)
        self.llm_tokens = Counter("recranker_llm_tokens", "Tokens run through the LLM.", registry=r)
        self.label_mass = Histogram(
            "recranker_label_mass", "Probability mass the answer labels received, per mode and request "
            "(low = prompt and model disagree).", ["mode"], buckets=MASS_BUCKETS, registry=r)
        self.cache = Counter("recranker_cache_requests", "Response cache lookups by result (error: the store "
                             "failed or was skipped as down).", ["result"], registry=r)
        self.store_errors = Counter("recranker_store_errors", "Failed user-store calls.", ["op"], registry=r)
        self.degraded = Counter(
            "recranker_degraded_responses", "Rank results served in backbone order instead of the LLM's.",
            ["reason"], registry=r)
        self.rejected = Counter("recranker_rejected_requests", "Requests refused for load.", ["reason"], registry=r)
        self.ranked = Counter("recranker_ranked_requests", "Rank requests answered, by source.", ["source"], registry=r)
        # issue 14: overload (admission by estimated tokens) and abandoned work
        self.abandoned = Counter(
            "recranker_abandoned_requests", "Rank requests whose caller stopped waiting (timeout or disconnect), "
            "by where the engine dropped them: queued (never run) or running (before its next pass).",
            ["stage"], registry=r)
        self.disconnects = Counter("recranker_client_disconnects", "Rank requests whose client went away "
                                   "before the answer.", registry=r)
        self.engine_busy = Gauge("recranker_engine_busy", "1 while an engine batch runs, else 0.", registry=r)
        self.queued_tokens = Gauge("recranker_queued_tokens", "Estimated forward tokens of the rank requests "
                                   "waiting for the engine.", registry=r)
        self.engine_tokens_per_s = Gauge("recranker_engine_tokens_per_second", "Measured engine throughput in "
                                         "estimated forward tokens per second (admission divides by it).", registry=r)
        self.queue_depth = Gauge("recranker_queue_depth", "Rank requests waiting for the engine.", registry=r)
        self.inflight = Gauge("recranker_engine_inflight_requests", "Rank requests inside the engine now.", registry=r)
        self.batch_size = Histogram(
            "recranker_batch_size", "Rank requests per engine batch.", buckets=BATCH_BUCKETS, registry=r)
        self.prefix_cache = PrefixCacheCollector()
        r.register(self.prefix_cache)
        # Every known label value exported at 0 from the start: dashboards show 0 instead of
        # "no data", ratios exist, and an alert's rate()/increase() sees the first error
        # (a series born at 1 has no increase).
        for result in ("hit", "miss", "error"):
            self.cache.labels(result)
        for op in STORE_OPS:
            self.store_errors.labels(op)
        for reason in DEGRADED_REASONS:
            self.degraded.labels(reason)
        for source in RANK_SOURCES:
            self.ranked.labels(source)
        self.rejected.labels("queue_full")

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            if stage in STAGES:
                self.stage_latency.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
