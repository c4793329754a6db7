"""Metrics read from outside the service's own code: the engine's prefix cache at scrape time."""

from __future__ import annotations

import torch
from prometheus_client.parser import text_string_to_metric_families

from ranker.engines.prefix_cache import PrefixCache, kv_bytes
from service.metrics import PREFIX_RESULTS, ServiceMetrics


def _samples(m: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(m.render().decode()) for s in fam.samples}


def _kv(tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, 1, tokens, 4), torch.zeros(1, 1, tokens, 4))]


def test_prefix_cache_metrics_read_the_engine_cache_at_scrape_time():
    m = ServiceMetrics()
    before = _samples(m)  # no engine yet: every series exists, at 0
    assert all(before[("recranker_prefix_cache_lookups_total", (("result", r),))] == 0 for r in PREFIX_RESULTS)
    assert before[("recranker_prefix_cache_bytes", ())] == 0

    cache = PrefixCache(max_bytes=2 * kv_bytes(_kv(8)))
    m.prefix_cache.stats = lambda: cache.stats
    cache.put("stem-a", _kv(8))
    cache.longest(["whole-a", "stem-a"])  # a returning user: only the history is reused
    cache.longest(["whole-b", "stem-b"])  # a new one
    cache.put("stem-b", _kv(8))
    cache.put("stem-c", _kv(8))  # over the bound: the least recent entry goes
    after = _samples(m)
    assert after[("recranker_prefix_cache_lookups_total", (("result", "stem"),))] == 1
    assert after[("recranker_prefix_cache_lookups_total", (("result", "miss"),))] == 1
    assert after[("recranker_prefix_cache_lookups_total", (("result", "hit"),))] == 0
    assert after[("recranker_prefix_cache_evictions_total", ())] == 1
    assert after[("recranker_prefix_cache_entries", ())] == 2
    assert after[("recranker_prefix_cache_bytes", ())] == 2 * kv_bytes(_kv(8))
