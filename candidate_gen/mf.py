"""Matrix factorisation trained with BPR (Rendle et al. 2009), one uniform negative per positive.

``MF`` is the torch module used during training; ``EmbeddingBackbone`` is the frozen,
numpy-only result that MF and LightGCN both export (a user table and an item table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from candidate_gen.base import Backbone


@dataclass
class EmbeddingConfig:
    """Hyper-parameters shared by the BPR embedding models (reference: SELFRec settings)."""

    emb_dim: int = 64  # embedding width
    lr: float = 1e-3  # Adam learning rate
    l2: float = 1e-4  # weight of the squared-norm penalty on the batch's embeddings
    batch_size: int = 2048  # positive (user, item) pairs per step
    epochs: int = 1000  # a generous cap: patience ends training; reaching the cap logs a warning
    eval_every: int = 5  # epochs between validation rounds
    patience: int = 6  # validation rounds without improvement before stopping
    init_std: float = 0.1  # std of the normal initialisation

    def __post_init__(self) -> None:
        for name in ("emb_dim", "batch_size", "epochs", "eval_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{type(self).__name__}.{name} must be > 0, got {getattr(self, name)}")
        if self.l2 < 0:
            raise ValueError(f"{type(self).__name__}.l2 must be >= 0, got {self.l2}")


@dataclass
class MFConfig(EmbeddingConfig):
    pass


class EmbeddingBackbone(Backbone):
    """Frozen user and item tables; the query is the user's row, or the mean of the history."""

    def __init__(self, name: str, items: np.ndarray, users: np.ndarray, known: np.ndarray):
        if items.ndim != 2 or users.ndim != 2 or items.shape[1] != users.shape[1]:
            raise ValueError(f"item table {items.shape} and user table {users.shape} must be 2-D of equal width")
        if known.shape != (users.shape[0],):
            raise ValueError(f"known mask {known.shape} must have one entry per user ({users.shape[0]})")
        self.name = name
        self._items = np.ascontiguousarray(items, dtype=np.float32)  # (n_items, d)
        self._users = np.ascontiguousarray(users, dtype=np.float32)  # (n_users, d)
        self.known = np.asarray(known, dtype=bool)  # (n_users,) had training likes

    def item_vectors(self) -> np.ndarray:
        return self._items

    def user_embeddings(self) -> np.ndarray:
        return self._users

    def query(self, user: int | None, history: Sequence[int]) -> np.ndarray:
        if user is not None and 0 <= user < len(self.known) and self.known[user]:
            return self._users[user]
        hist = np.asarray(history, dtype=np.int64)
        if hist.size == 0:
            return np.zeros(self._items.shape[1], dtype=np.float32)
        return self._items[hist].mean(axis=0)


def known_users(users: np.ndarray, n_users: int) -> np.ndarray:
    """(n_users,) bool: which users have at least one training like (their rows were trained)."""
    return np.bincount(users, minlength=n_users) > 0


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, config: MFConfig):
        super().__init__()
        self.config = config
        self.users = nn.Embedding(n_users, config.emb_dim)
        self.items = nn.Embedding(n_items, config.emb_dim)
        nn.init.normal_(self.users.weight, std=config.init_std)
        nn.init.normal_(self.items.weight, std=config.init_std)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        u, i, j = batch  # (B,) each: user, positive item, negative item
        eu, ei, ej = self.users(u), self.items(i), self.items(j)  # (B, d)
        return bpr_loss(eu, ei, ej, self.config.l2)

    @torch.no_grad()
    def export(self, known: np.ndarray) -> EmbeddingBackbone:
        return EmbeddingBackbone("mf", self.items.weight.numpy().copy(), self.users.weight.numpy().copy(), known)


def bpr_loss(eu: torch.Tensor, ei: torch.Tensor, ej: torch.Tensor, l2: float) -> torch.Tensor:
    """-log sigmoid(s_ui - s_uj), plus l2 * mean squared norm of the three embeddings."""
    diff = (eu * ei).sum(-1) - (eu * ej).sum(-1)  # (B,)
    reg = (eu.pow(2).sum(-1) + ei.pow(2).sum(-1) + ej.pow(2).sum(-1)).mean()
    return -F.logsigmoid(diff).mean() + l2 * reg


class BPRSampler:
    """Shuffled positive pairs in batches, each with one uniform negative the user has not liked."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int, batch_size: int):
        self.users, self.items, self.n_items, self.batch_size = users, items, n_items, batch_size
        self._pos = np.unique(users * n_items + items)  # sorted keys of known positives

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, rng: np.random.Generator):
        order = rng.permutation(len(self.users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            u, i = self.users[idx], self.items[idx]
            yield tuple(torch.from_numpy(a) for a in (u, i, self._negatives(u, rng)))

    def _negatives(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        j = rng.integers(0, self.n_items, size=len(u))
        for _ in range(10):  # resample collisions with positives; a few rounds clear nearly all
            keys = u * self.n_items + j
            at = np.minimum(np.searchsorted(self._pos, keys), len(self._pos) - 1)
            hit = self._pos[at] == keys
            if not hit.any():
                break
            j[hit] = rng.integers(0, self.n_items, size=int(hit.sum()))
        return j
