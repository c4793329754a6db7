"""Training on request-shaped examples, packed as the engine scores them.

A request row (``training.requests``) becomes ONE sequence: the shared prefix (system +
history), then every question's suffix, each suffix seeing the prefix and its own earlier
tokens only (block-causal mask) at the positions it would have alone. This is the same
function ``HFEngine`` computes when it scores a request (one prefix, packed suffixes), so
the model is tuned on exactly what it is served, and the prefix is run once per request
instead of once per question.

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


def collate_requests(batch: list[PackedRequest], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded rows of [prefix | suffix 1 | suffix 2 | ...] with a block-causal mask
    (B, 1, T, T), position ids that restart after the prefix for every suffix, and the
    (row, column) of each suffix's last token with its answer id and weight."""
    width = max(r.n_tokens for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), 1, width, width), dtype=torch.bool)
    mask[:, 0, :, 0] = True  # padding sees the first token: a fully masked row would be NaN
    rows, cols, answers, weights = [], [], [], []
    for b, r in enumerate(batch):
        n = len(r.prefix)
        ids[b, :n] = torch.tensor(r.prefix)
        pos[b, :n] = torch.arange(n)
        mask[b, 0, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
        start = n
        for suffix, answer, weight in zip(r.suffixes, r.answers, r.weights):
            m, end = len(suffix), start + len(suffix)
            ids[b, start:end] = torch.tensor(suffix)
            pos[b, start:end] = torch.arange(n, n + m)
            mask[b, 0, start:end, :n] = True
            mask[b, 0, start:end, start:end] = torch.ones(m, m, dtype=torch.bool).tril()
            rows.append(b)
            cols.append(end - 1)
            answers.append(answer)
            weights.append(weight)
            start = end
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "rows": torch.tensor(rows),
            "cols": torch.tensor(cols), "answers": torch.tensor(answers), "weights": torch.tensor(weights)}


def answer_losses(decoder, vocab_logits, batch: dict, device) -> torch.Tensor:
    """(N,) cross-entropy of each question's answer label at its suffix's last token."""
    hidden = decoder(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                     position_ids=batch["position_ids"].to(device), use_cache=False).last_hidden_state  # (B, T, d)
    last = hidden[batch["rows"].to(device), batch["cols"].to(device)]  # (N, d)
    logits = vocab_logits(last)  # (N, V), float32: the engine's own head
    return torch.nn.functional.cross_entropy(logits, batch["answers"].to(device), reduction="none")
