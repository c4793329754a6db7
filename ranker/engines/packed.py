"""Packed suffix rows: many short prompt suffixes in one row over a shared prefix's K/V.

The layout and its two forward passes (prefixes, then rows over their K/V), shared by the
engine (scoring) and training (the loss), so that the adapter is tuned on exactly the
function it is served with. In a row each token sees its own prefix (not the padding
after it) and the earlier tokens of its own suffix, at the positions it would have
alone, so every suffix computes what it would compute by itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Suffix tokens per packed row, a target. Attention inside a row is computed for every
# token pair and mostly masked away, so small packs waste less, but rows batched together
# are padded to the longest: ``balanced_packs`` splits a request into the fewest packs of
# this size and then evens them out. 256 measured fastest on CPU (bench/bench_packing.py).
# Training uses the same, so it runs what is served.
PACK_TOKENS = 256


def first_fit_packs(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped into packs of at most ``budget`` tokens (one longer than that gets a
    pack of its own), first-fit decreasing: packs come out nearly equally full, so rows
    batched together carry little padding. A pack's attention is computed for every token
    pair of the row and mostly masked away, which is why packs should stay small."""
    if budget < 1:
        raise ValueError(f"pack budget must be >= 1, got {budget}")
    packs: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for p, free in enumerate(room):
            if lengths[i] <= free:
                packs[p].append(i)
                room[p] -= lengths[i]
                break
        else:
            packs.append([i])
            room.append(budget - lengths[i])
    return packs


def balanced_packs(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """As many packs as ``first_fit_packs`` needs, filled evenly instead of greedily: each
    suffix, longest first, goes to the emptiest pack. Rows of one pass are padded to the
    longest, so first-fit's full pack next to a short one pays for padding (386 suffix
    tokens at budget 256: rows of 256 and 130, i.e. 126 padding tokens; balanced: 193 and
    193, none). A pack may pass the budget by less than one suffix."""
    n = len(first_fit_packs(lengths, budget))
    packs: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        p = min(range(n), key=lambda p: (load[p], p))
        packs[p].append(i)
        load[p] += lengths[i]
    return packs


@dataclass(frozen=True)
class PackedRows:
    """One forward pass's inputs for rows of packed suffixes on top of prefixes' K/V.

    ids, positions: (R, T); mask: (R, 1, T, width + T) bool, True = may attend (the first
    ``width`` key columns are the padded prefix K/V, the rest the row itself); row_of and
    last_of: per suffix, in pack order, the (row, column) of its last token."""

    ids: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor
    row_of: list[int]
    last_of: list[int]


def pack_rows(packed: Sequence[Sequence[Sequence[int]]], prefix_lens: Sequence[int], width: int,
              pad_id: int) -> PackedRows:
    """Row r holds the suffixes ``packed[r]`` and sits on a prefix of ``prefix_lens[r]``
    tokens, padded to ``width``. Padding tokens at a row's end see the first prefix token
    only (a row of all-masked attention would be NaN); nothing reads them."""
    n_rows, t_max = len(packed), max(sum(map(len, row)) for row in packed)
    ids = torch.full((n_rows, t_max), pad_id, dtype=torch.long)
    pos = torch.zeros((n_rows, t_max), dtype=torch.long)
    mask = torch.zeros((n_rows, 1, t_max, width + t_max), dtype=torch.bool)
    mask[:, 0, :, 0] = True
    row_of: list[int] = []
    last_of: list[int] = []
    for r, (suffixes, n_prefix) in enumerate(zip(packed, prefix_lens)):
        lens = torch.tensor([len(s) for s in suffixes])
        seg = torch.repeat_interleave(torch.arange(len(suffixes)), lens)  # suffix of each token
        within = torch.cat([torch.arange(n) for n in lens.tolist()])  # position inside it
        n = len(seg)
        ids[r, :n] = torch.tensor([t for s in suffixes for t in s])
        pos[r, :n] = within + n_prefix
        mask[r, 0, :n, :n_prefix] = True
        mask[r, 0, :n, width:width + n] = (seg[:, None] == seg[None, :]) & (within[:, None] >= within[None, :])
        row_of += [r] * len(suffixes)
        last_of += (lens.cumsum(0) - 1).tolist()
    return PackedRows(ids, pos, mask, row_of, last_of)


@functools.lru_cache(maxsize=None)
def _cache_keyword(decoder_type: type) -> str:
    params = inspect.signature(decoder_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5


def prefix_kv(decoder, ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values), each (B, H, width, D), of right-padded prefixes ``ids``
    (B, width) with attention ``mask`` (B, width). Gradients flow through when enabled."""
    from transformers import DynamicCache

    cache = DynamicCache()  # full (non-sliding) layers: the suffix rows need every position
    decoder(input_ids=ids, attention_mask=mask, use_cache=True, **{_cache_keyword(type(decoder)): cache})
    return [(layer.keys, layer.values) for layer in cache.layers]


def rows_hidden(decoder, kv: list[tuple[torch.Tensor, torch.Tensor]], slots: torch.Tensor, rows: PackedRows,
                device) -> torch.Tensor:
    """(R, T, d) hidden states of packed rows, row r on top of prefix ``slots[r]`` of ``kv``."""
    from transformers import DynamicCache

    # index_select copies: the cache's update() concatenates anyway, and the shared
    # prefix K/V must come out of every pass unchanged
    cache = DynamicCache([(k.index_select(0, slots), v.index_select(0, slots)) for k, v in kv])
    return decoder(input_ids=rows.ids.to(device), attention_mask=rows.mask.to(device),
                   position_ids=rows.positions.to(device), use_cache=True,
                   **{_cache_keyword(type(decoder)): cache}).last_hidden_state


def extend_kv(decoder, kv: list[tuple[torch.Tensor, torch.Tensor]], rows: PackedRows,
              device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values), each (R, H, T, D), of the tokens of ``rows`` (one suffix
    per row, row r on prefix r of ``kv``): a cached prefix continued by more tokens, with
    the K/V those tokens have when run in one pass with it. Columns past a row's own
    tokens are padding."""
    from transformers import DynamicCache

    width = kv[0][0].shape[2]
    cache = DynamicCache([(k, v) for k, v in kv])  # update() concatenates: ``kv`` stays unchanged
    decoder(input_ids=rows.ids.to(device), attention_mask=rows.mask.to(device),
            position_ids=rows.positions.to(device), use_cache=True, **{_cache_keyword(type(decoder)): cache})
    return [(layer.keys[:, :, width:], layer.values[:, :, width:]) for layer in cache.layers]
