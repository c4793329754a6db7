"""A per-engine LRU of computed prefixes (the K/V of a user's history), bounded in bytes.

A user's next request with other candidates (or another mode) shares the same rendered
prefix, so its K/V can be reused and only the short candidate suffixes are run. Where the
prefix also lists the request's candidates (the catalogue layout), only its first part,
the user's history (the stem), comes back: it is kept as an entry of its own, and a new
candidate list is run on top of it. The key
holds what decides the K/V: the model, the adapter revision and the prefix's token ids;
new events change the history text, hence the ids, hence the key — stale entries are
never read, only aged out. Entries are per-layer (keys, values) of ONE prefix, unpadded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

LayerKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each (1, H, n, D)


def prefix_key(model: str, adapter_revision: str | None, ids: Sequence[int]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{model}\x00{adapter_revision or '-'}\x00".encode())
    h.update(b"".join(int(i).to_bytes(4, "little") for i in ids))
    return h.hexdigest()


def kv_bytes(kv: LayerKV) -> int:
    return sum(t.numel() * t.element_size() for pair in kv for t in pair)


@dataclass
class CacheStats:
    hits: int = 0  # the whole prefix was held
    partial_hits: int = 0  # only its stem was (``PrefixCache.longest``)
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0

    @property
    def lookups(self) -> int:
        return self.hits + self.partial_hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Share of lookups that found the whole prefix."""
        return self.hits / self.lookups if self.lookups else 0.0

    @property
    def reuse_rate(self) -> float:
        """Share of lookups that found the whole prefix or its stem."""
        return (self.hits + self.partial_hits) / self.lookups if self.lookups else 0.0


class PrefixCache:
    """LRU by bytes. ``max_bytes=0`` disables it (every lookup misses, nothing is kept)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"prefix cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[LayerKV, int]] = OrderedDict()
        self.stats = CacheStats()

    def get(self, key: str) -> LayerKV | None:
        return self.longest([key])[1]

    def longest(self, keys: Sequence[str]) -> tuple[int, LayerKV | None]:
        """The first of ``keys`` held (longest prefix first): (its index, its K/V), or
        (-1, None). One lookup in the stats: a hit for the first key, a partial hit for a
        later one, else a miss."""
        for i, key in enumerate(keys):
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                if i == 0:
                    self.stats.hits += 1
                else:
                    self.stats.partial_hits += 1
                return i, entry[0]
        self.stats.misses += 1
        return -1, None

    def put(self, key: str, kv: LayerKV) -> None:
        size = kv_bytes(kv)
        if size > self.max_bytes:  # larger than the whole cache (or the cache is off)
            return
        if key in self._entries:
            self.stats.bytes -= self._entries.pop(key)[1]
        self._entries[key] = (kv, size)
        self.stats.bytes += size
        while self.stats.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.stats.bytes -= dropped
            self.stats.evictions += 1
        self.stats.entries = len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.stats.bytes = self.stats.entries = 0
