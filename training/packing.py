"""Training on request-shaped examples, packed as the engine scores them.

A request row (``training.requests``) is laid out as the engine scores it: the shared
prefix (system + history) in one pass, then every question's suffix, packed into short
rows over the prefix's K/V, each suffix seeing the prefix and its own earlier tokens only
at the positions it would have alone (``ranker.engines.packed``, the engine's own
layout). So the model is tuned on exactly what it is served, the prefix is run once per
request instead of once per question, and attention is not spent on one long row whose
token pairs are mostly masked (that cost as much as all the matmuls).

The loss is the cross-entropy of each question's answer label at the suffix's last
token, over the full vocabulary (so it also moves probability mass onto the labels). The
vocabulary head runs only at those positions. Each request weighs each of its modes
equally (a pointwise question counts 1/10, a listwise one 1/3), so the ten pointwise
questions do not drown out the three listwise ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ranker.chat import to_scoring_prompt
from ranker.engines.packed import PACK_TOKENS, balanced_packs, pack_rows, prefix_kv, rows_hidden
from ranker.types import Prompt


@dataclass
class PackedRequest:
    prefix: list[int]
    suffixes: list[list[int]]
    answers: list[int]  # label token id per question
    weights: list[float]  # per question: 1 / (questions of its mode in this request)
    modes: list[str]

    @property
    def n_tokens(self) -> int:
        return len(self.prefix) + sum(map(len, self.suffixes))


def encode_request(engine, row: dict) -> PackedRequest:
    """Token ids as the engine scores them: prefix once, one suffix per question."""
    prefix: list[int] | None = None
    suffixes, answers, modes = [], [], []
    for q in row["questions"]:
        sp = to_scoring_prompt(engine, Prompt(row["system"], row["shared"], q["specific"], tuple(q["labels"])))
        pre, suf = engine.encode(sp)
        if prefix is None:
            prefix = pre
        elif pre != prefix:
            raise ValueError(f"request of user {row['user_id']}: questions do not share one prefix")
        if q["answer"] not in q["labels"]:
            raise ValueError(f"answer {q['answer']!r} is not one of the labels {q['labels']}")
        suffixes.append(suf)
        answers.append(engine.label_token_ids([q["answer"]])[0])
        modes.append(q["mode"])
    if prefix is None:
        raise ValueError(f"request of user {row['user_id']} has no questions")
    weights = [1.0 / modes.count(m) for m in modes]
    return PackedRequest(prefix, suffixes, answers, weights, modes)


def collate_requests(batch: list[PackedRequest], pad_id: int, pack_tokens: int = PACK_TOKENS) -> dict:
    """The engine's layout: the requests' prefixes right-padded (one pass), then their
    suffixes in packs of ``pack_tokens`` (``ranker.engines.packed``), each row over its
    own request's prefix K/V. Per question, in request order: (row, column) of its last
    token, answer id and weight."""
    width = max(len(r.prefix) for r in batch)
    prefix_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((len(batch), width), dtype=torch.long)
    packed, slots, order = [], [], []  # order: each packed suffix's index among all questions
    offset = 0
    for b, r in enumerate(batch):
        prefix_ids[b, :len(r.prefix)] = torch.tensor(r.prefix)
        prefix_mask[b, :len(r.prefix)] = 1
        for pack in balanced_packs([len(s) for s in r.suffixes], pack_tokens):
            packed.append([r.suffixes[i] for i in pack])
            slots.append(b)
            order += [offset + i for i in pack]
        offset += len(r.suffixes)
    rows = pack_rows(packed, [len(batch[b].prefix) for b in slots], width, pad_id)
    row_of, last_of = [0] * offset, [0] * offset
    for k, q in enumerate(order):
        row_of[q], last_of[q] = rows.row_of[k], rows.last_of[k]
    return {"prefix_ids": prefix_ids, "prefix_mask": prefix_mask, "slots": torch.tensor(slots),
            "packed_rows": rows,
            "rows": torch.tensor(row_of), "cols": torch.tensor(last_of),
            "answers": torch.tensor([a for r in batch for a in r.answers]),
            "weights": torch.tensor([w for r in batch for w in r.weights], dtype=torch.float32),
            "n_tokens": sum(r.n_tokens for r in batch)}


def answer_losses(decoder, vocab_logits, batch: dict, device) -> torch.Tensor:
    """(N,) cross-entropy of each question's answer label at its suffix's last token:
    the prefixes' pass, then the packed rows over their K/V (gradients flow into both)."""
    kv = prefix_kv(decoder, batch["prefix_ids"].to(device), batch["prefix_mask"].to(device))
    hidden = rows_hidden(decoder, kv, batch["slots"].to(device), batch["packed_rows"], device)  # (R, T, d)
    last = hidden[batch["rows"].to(device), batch["cols"].to(device)]  # (N, d)
    logits = vocab_logits(last)  # (N, V), float32: the engine's own head
    return torch.nn.functional.cross_entropy(logits, batch["answers"].to(device), reduction="none")
