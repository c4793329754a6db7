"""From instruction rows to training batches, tokenized exactly as serving tokenizes.

Every example is rendered through ``ranker.chat.to_scoring_prompt`` with the serving
engine's chat template and tokenized by ``HFEngine.encode`` (prefix and suffix
separately, as scoring does), followed by the answer and the end-of-turn tokens. The
loss covers the answer and end-of-turn tokens only; the first answer token is checked to
be the very label token serving reads (``Engine.label_token_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ranker.chat import to_scoring_prompt
from ranker.types import Prompt


@dataclass
class Encoded:
    input_ids: list[int]
    n_answer: int  # the last n_answer ids are the answer + end of turn (the loss targets)
    task: str


def end_of_turn_ids(engine) -> list[int]:
    """The tokens the chat template puts after an assistant message (ChatML: <|im_end|>)."""
    tok, mark = engine.tokenizer, "\u2063ANSWER\u2063"
    msgs = [{"role": "user", "content": "u"}, {"role": "assistant", "content": mark}]
    try:
        text = tok.apply_chat_template(msgs, tokenize=False)
        tail = text.split(mark, 1)[1].rstrip()
    except Exception:  # noqa: BLE001 - templates without an assistant role: fall back to EOS
        tail = ""
    if tail:
        return list(tok(tail, add_special_tokens=False)["input_ids"])
    if tok.eos_token_id is None:
        raise ValueError("the tokenizer has neither an assistant end-of-turn marker nor an EOS token")
    return [int(tok.eos_token_id)]


def encode_example(engine, row: dict, eot: list[int]) -> Encoded:
    """prefix ids + suffix ids (as ``engine.encode`` gives them for serving) + answer + eot."""
    prompt = Prompt(row["system"], row["shared"], row["specific"], tuple(row["labels"]))
    sp = to_scoring_prompt(engine, prompt)
    prefix, suffix = engine.encode(sp)
    tok = engine.tokenizer
    # the answer is tokenized where it sits (after the suffix), as label_token_ids does
    base = list(tok(sp.suffix, add_special_tokens=False)["input_ids"])
    full = list(tok(sp.suffix + row["answer"], add_special_tokens=False)["input_ids"])
    answer = full[len(base):] if full[: len(base)] == base else list(tok(row["answer"], add_special_tokens=False)["input_ids"])
    first = max((lab for lab in row["labels"] if row["answer"].startswith(lab)), key=len, default=None)
    if first is None:
        raise ValueError(f"answer {row['answer']!r} does not start with one of the labels {row['labels']}")
    expected = engine.label_token_ids([first])[0]
    if not answer or answer[0] != expected:
        raise ValueError(f"answer {row['answer']!r} starts with token {answer[:1]}, serving reads {expected} for {first!r}")
    return Encoded(prefix + suffix + answer + eot, len(answer) + len(eot), row["task"])


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """LEFT-padded batch (answers end every row, so the loss needs only the last K logits),
    with explicit position ids so padding does not shift positions."""
    width = max(len(e.input_ids) for e in batch)
    keep = max(e.n_answer for e in batch) + 1
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for r, e in enumerate(batch):
        n = len(e.input_ids)
        ids[r, width - n:] = torch.tensor(e.input_ids)
        mask[r, width - n:] = 1
        labels[r, width - e.n_answer:] = ids[r, width - e.n_answer:]
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "labels": labels, "keep": keep}


def token_losses(model, batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) cross-entropy of the answer tokens (0 elsewhere) and the (B, K) target mask."""
    keep = batch["keep"]
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                position_ids=batch["position_ids"].to(device), logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1, :].float()  # (B, keep-1, V): predicts the last keep-1 tokens
    targets = batch["labels"][:, -(keep - 1):].to(device)  # (B, keep-1)
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
    return loss, targets != -100


@torch.no_grad()
def example_losses(model, encoded: list[Encoded], pad_id: int, device, batch_size: int = 8) -> np.ndarray:
    """Mean answer-token loss of each example (eval mode), e.g. before vs after tuning."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(encoded), batch_size):
        loss, mask = token_losses(model, collate(encoded[i: i + batch_size], pad_id), device)
        out.extend((loss.sum(1) / mask.sum(1)).cpu().tolist())
    model.train(was_training)
    return np.asarray(out)


def pad_id_of(tokenizer) -> int:
    # any valid id works: padded slots are masked out and never targets
    for cand in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if cand is not None:
            return int(cand)
    return 0


GROUP_STEPS = 8  # optimizer steps whose examples are sorted by length together


class BatchPlan:
    """Which examples each optimizer step uses: a pure function of (lengths, step, seed).

    Each epoch is a seeded permutation; with ``group_by_length`` every run of GROUP_STEPS
    steps' worth of it is sorted by length, so micro-batches hold similar lengths and
    padding stays small. Resuming needs no data-loader state, only the step number.
    """

    def __init__(self, lengths: list[int], cfg):
        self.lengths = np.asarray(lengths)
        self.cfg = cfg
        self.per_step = cfg.batch_size * cfg.grad_accum
        self._epochs: dict[int, np.ndarray] = {}

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            self._epochs = {}  # one epoch at a time is enough
            perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.lengths))
            if self.cfg.group_by_length:
                group = self.per_step * GROUP_STEPS
                chunks = [perm[i: i + group] for i in range(0, len(perm), group)]
                perm = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
            self._epochs[epoch] = perm
        return self._epochs[epoch]

    def step(self, step: int) -> list[list[int]]:
        """The micro-batches (lists of example indices) of optimizer step ``step``."""
        n = len(self.lengths)
        out = []
        for pos in range(step * self.per_step, (step + 1) * self.per_step):
            epoch, k = divmod(pos, n)
            out.append(int(self.epoch_order(epoch)[k]))
        b = self.cfg.batch_size
        return [out[i: i + b] for i in range(0, self.per_step, b)]
