"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, trained with BPR.

Propagation: E_{k+1} = A_hat E_k with A_hat = D^-1/2 A D^-1/2 over the bipartite graph of
training likes; the final embedding is the mean of layers 0..K. No weights, no
non-linearity: only the layer-0 embeddings are parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from candidate_gen.mf import EmbeddingBackbone, EmbeddingConfig, bpr_loss


@dataclass
class LightGCNConfig(EmbeddingConfig):
    n_layers: int = 2  # propagation steps
    # 10x the reference lr: at 1e-3 LightGCN needs several hundred epochs (minutes on 2 cores);
    # at 1e-2 it peaks near epoch 50 with validation NDCG@10 as high as the slow run's
    lr: float = 1e-2
    patience: int = 5  # validation rounds without improvement before stopping (cap: EmbeddingConfig.epochs)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_layers < 0:
            raise ValueError(f"LightGCNConfig.n_layers must be >= 0, got {self.n_layers}")


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """(n_users + n_items)^2 sparse CSR D^-1/2 A D^-1/2; nodes are users first, then items."""
    pairs = np.unique(np.stack([users, items], axis=1), axis=0)  # repeated likes count once
    u, i = pairs[:, 0], pairs[:, 1] + n_users
    rows, cols = np.concatenate([u, i]), np.concatenate([i, u])
    deg = np.bincount(rows, minlength=n_users + n_items).astype(np.float32)
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5  # isolated nodes keep a zero row
    vals = inv_sqrt[rows] * inv_sqrt[cols]
    idx = torch.from_numpy(np.stack([rows, cols]))
    n = n_users + n_items
    coo = torch.sparse_coo_tensor(idx, torch.from_numpy(vals), (n, n), check_invariants=True).coalesce()
    with warnings.catch_warnings():  # CSR is "beta" in torch; it is the fast path for A @ X
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


class _SymmetricSpMM(torch.autograd.Function):
    """y = A x for a symmetric sparse A; the gradient is A g again, which spares torch's
    generic sparse backward (it transposes A on every step and dominated the epoch time)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


class LightGCN(nn.Module):
    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor, config: LightGCNConfig):
        super().__init__()
        self.config, self.n_users, self.n_items = config, n_users, n_items
        self.register_buffer("adj", adj, persistent=False)  # fixed graph, not a parameter
        self.ego = nn.Embedding(n_users + n_items, config.emb_dim)  # layer 0: users, then items
        nn.init.normal_(self.ego.weight, std=config.init_std)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over layers 0..K -> (n_users, d), (n_items, d)."""
        e = self.ego.weight  # (N, d)
        acc = e
        for _ in range(self.config.n_layers):
            e = _SymmetricSpMM.apply(self.adj, e)  # (N, d)
            acc = acc + e
        final = acc / (self.config.n_layers + 1)
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        u, i, j = batch  # (B,) each
        users, items = self.propagate()
        bpr = bpr_loss(users[u], items[i], items[j], 0.0)
        # L2 on the parameters (layer 0) of the batch, as in the LightGCN paper
        eu, ei, ej = self.ego.weight[u], self.ego.weight[self.n_users + i], self.ego.weight[self.n_users + j]
        reg = (eu.pow(2).sum(-1) + ei.pow(2).sum(-1) + ej.pow(2).sum(-1)).mean()
        return bpr + self.config.l2 * reg

    @torch.no_grad()
    def export(self, known: np.ndarray) -> EmbeddingBackbone:
        users, items = self.propagate()
        return EmbeddingBackbone("lightgcn", items.numpy().copy(), users.numpy().copy(), known)
