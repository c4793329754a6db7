"""SASRec (Kang & McAuley 2018): a causal transformer over the user's like sequence.

Pre-LayerNorm blocks with one-head causal self-attention. The hidden state at the last
position is the query; item vectors are the (shared) input embedding table, so scoring
stays an inner product. Trained with full-softmax cross-entropy on next-item prediction
(every other item is a negative), which on small catalogues learns faster than SASRec's
original one-negative BCE.

Item index ``i`` is token ``i + 1``; token 0 is padding (sequences are left-padded so the
newest like always sits at the last position).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from candidate_gen.base import Backbone


@dataclass
class SASRecConfig:
    emb_dim: int = 64  # hidden width
    n_blocks: int = 2  # transformer blocks
    n_heads: int = 1  # attention heads (emb_dim must divide evenly)
    dropout: float = 0.2  # on embeddings, attention and feed-forward outputs
    max_len: int = 50  # newest likes kept per sequence
    lr: float = 1e-3  # Adam learning rate
    l2: float = 1e-4  # AdamW weight decay
    batch_size: int = 128  # sequences per step
    epochs: int = 1000  # a generous cap: patience ends training; reaching the cap logs a warning
    eval_every: int = 2  # epochs between validation rounds
    patience: int = 5  # validation rounds without improvement before stopping

    def __post_init__(self) -> None:
        for name in ("emb_dim", "n_blocks", "n_heads", "max_len", "batch_size", "epochs", "eval_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.emb_dim % self.n_heads:
            raise ValueError(f"SASRecConfig.emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ValueError(f"SASRecConfig.lr must be > 0, got {self.lr}")
        if self.l2 < 0:
            raise ValueError(f"SASRecConfig.l2 must be >= 0, got {self.l2}")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.qkv = nn.Linear(config.emb_dim, 3 * config.emb_dim)
        self.proj = nn.Linear(config.emb_dim, config.emb_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, h, T, c)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, T, c)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        d = config.emb_dim
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(config)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    def __init__(self, n_items: int, config: SASRecConfig):
        super().__init__()
        self.config, self.n_items = config, n_items
        self.item_emb = nn.Embedding(n_items + 1, config.emb_dim, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.emb_dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_blocks))
        self.ln_f = nn.LayerNorm(config.emb_dim)
        self.apply(_init_weights)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens, left-padded -> (B, T, d) hidden states."""
        B, T = seq.shape
        real = seq > 0  # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()  # (T, T)
        # attend to earlier real items, and always to yourself so padded rows never go NaN
        mask = causal & (real[:, None, :] | torch.eye(T, dtype=torch.bool, device=seq.device))  # (B, T, T)
        pos = torch.arange(self.config.max_len - T, self.config.max_len, device=seq.device)  # (T,)
        x = self.item_emb(seq) * math.sqrt(self.config.emb_dim) + self.pos_emb(pos)  # (B, T, d)
        x = self.drop(x) * real.unsqueeze(-1)
        for block in self.blocks:
            x = block(x, mask.unsqueeze(1)) * real.unsqueeze(-1)
        return self.ln_f(x)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        seq, target = batch  # (B, T) each; target 0 = no prediction at that position
        has = target > 0  # (B, T); padded positions would waste the costly (M, n_items) logits
        h = self(seq)[has]  # (M, d)
        logits = h @ self.item_emb.weight[1:].T  # (M, n_items)
        return F.cross_entropy(logits, target[has] - 1)

    @torch.no_grad()
    def export(self) -> SASRecBackbone:
        return SASRecBackbone(copy.deepcopy(self))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
    if isinstance(m, nn.Embedding) and m.padding_idx is not None:
        with torch.no_grad():
            m.weight[m.padding_idx].zero_()


def pad_left(histories: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """Item-index histories -> (N, max_len) tokens (item + 1), newest last, 0-padded on the left."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for r, h in enumerate(histories):
        tail = np.asarray(h, dtype=np.int64)[-max_len:]
        if tail.size:
            out[r, max_len - tail.size :] = tail + 1
    return torch.from_numpy(out)


class SASRecBackbone(Backbone):
    name = "sasrec"

    def __init__(self, model: SASRec):
        self.model = model.eval()
        self.config = model.config
        self._items = model.item_emb.weight[1:].detach().numpy().copy()  # (n_items, d)

    def item_vectors(self) -> np.ndarray:
        return self._items

    def query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        return self.query_batch([history])[0]

    @torch.no_grad()
    def query_batch(self, histories: Sequence[Sequence[int]], chunk: int = 1024) -> np.ndarray:
        """(N, d) queries: hidden state at the last position of each left-padded history."""
        for h in histories:
            if len(h) and (min(h) < 0 or max(h) >= len(self._items)):
                raise ValueError(f"history item index out of range 0..{len(self._items) - 1}: {list(h)[:10]}")
        outs = [np.zeros((0, self._items.shape[1]), dtype=np.float32)]
        for start in range(0, len(histories), chunk):
            seq = pad_left(histories[start : start + chunk], self.config.max_len)  # (n, T)
            outs.append(self.model(seq)[:, -1].numpy())  # (n, d)
        return np.concatenate(outs)

    def config_dict(self) -> dict:
        return asdict(self.config)


class SequenceSampler:
    """Training windows cut from each user's like sequence: input tokens and next-item targets."""

    def __init__(self, histories: Sequence[Sequence[int]], max_len: int, batch_size: int):
        self.inputs, self.targets = training_windows(histories, max_len)  # (S, T) each
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def epoch(self, rng: np.random.Generator):
        order = rng.permutation(len(self.inputs))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield torch.from_numpy(self.inputs[idx]), torch.from_numpy(self.targets[idx])


def training_windows(histories: Sequence[Sequence[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut sequences longer than max_len + 1 into consecutive windows from the newest end,
    so every like is a target once; sequences of one like give nothing to predict."""
    ins, tgts = [], []
    for h in histories:
        h = list(h)
        for end in range(len(h), 1, -max_len):
            w = h[max(0, end - max_len - 1) : end]
            ins.append(w[:-1])
            tgts.append(w[1:])
    if not ins:
        raise ValueError("no user has two or more training likes: nothing for SASRec to learn from")
    return pad_left(ins, max_len).numpy(), pad_left(tgts, max_len).numpy()
