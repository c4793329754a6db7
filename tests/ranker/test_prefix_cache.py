"""The per-engine prefix cache: an LRU bounded in bytes, keyed so that new history misses,
and scores that do not depend on whether a prefix came from the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ranker.chat import to_scoring_prompt
from ranker.engines.hf import HFEngine
from ranker.engines.prefix_cache import PrefixCache, kv_bytes, prefix_key
from ranker.modes.registry import ALL_LABELS
from ranker.ranker import Ranker, RankerConfig, RankRequest
from ranker.types import Candidate, HistoryEntry, UserProfile


def _kv(n_tokens: int, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, 1, n_tokens, 4), torch.zeros(1, 1, n_tokens, 4)) for _ in range(layers)]


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    entry = kv_bytes(_kv(10))
    assert entry == 2 * 2 * 10 * 4 * 4  # layers x (k, v) x tokens x dim x 4 bytes
    cache = PrefixCache(max_bytes=3 * entry)
    for key in "abc":
        cache.put(key, _kv(10))
    assert cache.get("a") is not None  # a is now the most recent; b the least
    cache.put("d", _kv(10))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("d") is not None
    assert cache.stats.bytes == 3 * entry and cache.stats.entries == 3 and cache.stats.evictions == 1
    cache.put("big", _kv(40))  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get("big") is None and cache.stats.entries == 3
    assert cache.stats.hits == 3 and cache.stats.misses == 2


def test_disabled_cache_keeps_nothing() -> None:
    cache = PrefixCache(0)
    cache.put("a", _kv(1))
    assert cache.get("a") is None and cache.stats.bytes == 0
    with pytest.raises(ValueError, match=">= 0"):
        PrefixCache(-1)


def test_longest_finds_the_first_key_held_and_counts_one_lookup() -> None:
    cache = PrefixCache(max_bytes=1 << 20)
    cache.put("stem", _kv(4))
    assert cache.longest(["whole", "stem"])[0] == 1  # only the stem is held: a partial hit
    cache.put("whole", _kv(8))
    at, kv = cache.longest(["whole", "stem"])
    assert at == 0 and kv[0][0].shape[2] == 8
    assert cache.longest(["other", "none"]) == (-1, None)
    assert (cache.stats.hits, cache.stats.partial_hits, cache.stats.misses) == (1, 1, 1)
    assert cache.stats.hit_rate == pytest.approx(1 / 3) and cache.stats.reuse_rate == pytest.approx(2 / 3)


def test_key_depends_on_model_adapter_and_every_token() -> None:
    base = prefix_key("m", "rev1", [1, 2, 3])
    assert base == prefix_key("m", "rev1", [1, 2, 3])
    assert len({base, prefix_key("m", "rev2", [1, 2, 3]), prefix_key("m2", "rev1", [1, 2, 3]),
                prefix_key("m", "rev1", [1, 2, 4]), prefix_key("m", None, [1, 2, 3])}) == 5


USER = UserProfile("u1", (HistoryEntry("1", "Alien (1979)", 5.0), HistoryEntry("2", "Heat (1995)", 2.0)))
CANDS = [Candidate("a", "Fargo (1996)", 0.9), Candidate("b", "Babe (1995)", 0.5), Candidate("c", "Jaws (1975)", 0.1)]
OTHER_CANDS = [Candidate("d", "Heat (1995)", 0.3), *CANDS[:2]]  # the same user's next request
NEWER = UserProfile("u1", (*USER.history, HistoryEntry("3", "Babe (1995)", 4.0)))  # after a new event


def _scoring_prompts(ranker: Ranker, request: RankRequest):
    return [to_scoring_prompt(ranker.engine, p) for plan in ranker.plans(request).values() for p in plan.prompts]


def _catalogue_ranker(model_dir: Path) -> Ranker:
    """A float32 engine with a prefix cache, ranking in the catalogue layout."""
    cached = HFEngine(model_dir, device="cpu", dtype="float32", prefix_cache_bytes=64 << 20)
    return Ranker(cached, RankerConfig(pairwise_budget=1, listwise_shuffles=1, prompt_layout="catalogue"))


@pytest.mark.slow
def test_cached_prefix_gives_the_same_scores_and_new_events_miss(model_dir: Path) -> None:
    cached = HFEngine(model_dir, device="cpu", dtype="float32", prefix_cache_bytes=64 << 20)
    cfg = RankerConfig(pairwise_budget=1, listwise_shuffles=1)
    ranker = Ranker(cached, cfg)
    prompts = _scoring_prompts(ranker, RankRequest(USER, list(CANDS), k=3))
    cold = cached.score(prompts, ALL_LABELS)  # computes and stores the user's prefix
    assert cached.prefix_cache.stats.misses == 1 and cached.prefix_cache.stats.entries == 1
    warm = cached.score(prompts, ALL_LABELS)
    assert cached.prefix_cache.stats.hits == 1
    np.testing.assert_allclose(warm.logprobs, cold.logprobs, atol=1e-5)
    # a hit computes only the suffixes: the prefix's tokens are not counted again
    prefix_tokens = len(cached.encode(prompts[0])[0])
    assert warm.forward_tokens == cold.forward_tokens - prefix_tokens and warm.calls == cold.calls - 1
    # a request with other candidates reuses the same history prefix
    ranker.rank(RankRequest(USER, list(OTHER_CANDS), k=2))
    assert cached.prefix_cache.stats.hits == 2
    # a new event changes the history, hence the prefix: a miss, never a stale hit
    ranker.rank(RankRequest(NEWER, list(CANDS), k=3))
    assert cached.prefix_cache.stats.misses == 2
    # and a cache-less engine scores exactly the same
    plain = HFEngine(model_dir, device="cpu", dtype="float32")
    np.testing.assert_allclose(plain.score(prompts, ALL_LABELS).logprobs, warm.logprobs, atol=1e-4)
    assert plain.prefix_cache.stats.entries == 0


@pytest.mark.slow
def test_catalogue_requests_reuse_the_history_stem_with_the_same_scores(model_dir: Path) -> None:
    # In the catalogue layout the shared prefix lists the request's candidates, so a
    # user's next request with other candidates repeats only the history part (the stem).
    ranker = _catalogue_ranker(model_dir)
    cached = ranker.engine
    prompts = [_scoring_prompts(ranker, RankRequest(USER, list(cands), k=2)) for cands in (CANDS, OTHER_CANDS)]
    stem = prompts[0][0].stem
    assert stem > 0 and prompts[0][0].prefix[:stem] == prompts[1][0].prefix[:stem]
    assert prompts[0][0].prefix != prompts[1][0].prefix
    stem_tokens = len(cached._ids(prompts[1][0].prefix[:stem]))
    cached.score(prompts[0], ALL_LABELS)  # stores the stem only: the candidate list rarely comes back
    assert cached.prefix_cache.stats.misses == 1 and cached.prefix_cache.stats.entries == 1
    conf = cached.model.config
    per_token = conf.num_hidden_layers * 2 * conf.num_key_value_heads * (conf.hidden_size // conf.num_attention_heads) * 4
    assert cached.prefix_cache.stats.bytes == stem_tokens * per_token  # float32: 4 bytes
    warm = cached.score(prompts[1], ALL_LABELS)
    assert cached.prefix_cache.stats.partial_hits == 1
    # only the candidate list and the questions ran: the stem's tokens are not counted again
    plain = HFEngine(model_dir, device="cpu", dtype="float32")
    cold = plain.score(prompts[1], ALL_LABELS)
    assert warm.forward_tokens == cold.forward_tokens - stem_tokens
    np.testing.assert_allclose(warm.logprobs, cold.logprobs, atol=1e-4)
    # the same request again also reuses the stem (and still scores the same)
    again = cached.score(prompts[1], ALL_LABELS)
    assert cached.prefix_cache.stats.partial_hits == 2 and cached.prefix_cache.stats.entries == 1
    np.testing.assert_allclose(again.logprobs, cold.logprobs, atol=1e-4)
    # new history changes the stem: a miss, never a stale reuse
    ranker.rank(RankRequest(NEWER, list(CANDS), k=3))
    assert cached.prefix_cache.stats.misses == 2


@pytest.mark.slow
def test_a_batch_mixing_stem_hits_and_misses_scores_as_each_alone(model_dir: Path) -> None:
    # a service micro-batch: one returning user (history cached) and one new user, one engine call
    ranker = _catalogue_ranker(model_dir)
    cached = ranker.engine
    newcomer = UserProfile("u2", (HistoryEntry("9", "Toy Story (1995)", 4.0),))
    cached.score(_scoring_prompts(ranker, RankRequest(USER, list(CANDS), k=3)), ALL_LABELS)  # u1's history is cached
    batch = _scoring_prompts(ranker, RankRequest(USER, list(OTHER_CANDS), k=2)) + \
        _scoring_prompts(ranker, RankRequest(newcomer, list(CANDS), k=3))
    mixed = cached.score(batch, ALL_LABELS)
    assert cached.prefix_cache.stats.partial_hits == 1 and cached.prefix_cache.stats.misses == 2
    plain = HFEngine(model_dir, device="cpu", dtype="float32")
    np.testing.assert_allclose(mixed.logprobs, plain.score(batch, ALL_LABELS).logprobs, atol=1e-4)
