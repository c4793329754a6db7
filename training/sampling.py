"""Adaptive user sampling: which users become instruction examples (docs/method.md §4).

Budget N draws with replacement, built from two draws of M = 0.6 N each:
- importance-aware: P(u) proportional to ln(1 + n_u), n_u = the user's training likes.
  The reference uses ln(n_u), which gives a user with exactly one like probability 0;
  ln(1 + n_u) keeps the same shape and gives every eligible user a positive chance.
- clustering-based: K-means on the backbone's user vectors; cluster k gets
  round(|C_k| / |U| * M) draws, uniform inside the cluster.
The two draws are pooled; a pool entry of a user who occurs c times in the pool gets
weight penalty**(c - 1) (0.95 in the paper), and the final N entries are drawn from the
pool by weight without replacement (the pool entries are draws; we keep N of them), or
with replacement when the pool is smaller than N.

Uniform sampling with the same budget is the ablation baseline.
Everything here is a pure function of its inputs and a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from candidate_gen.split import Split
from training.data_io import write_json_atomic

log = logging.getLogger(__name__)

Method = Literal["adaptive", "uniform", "importance", "clustering"]
METHODS: tuple[str, ...] = ("adaptive", "uniform", "importance", "clustering")


@dataclass(frozen=True)
class SamplingConfig:
    method: Method = "adaptive"  # adaptive = importance + clustering + repetition penalty
    budget: int = 5000  # N: final number of draws (the reference uses 5,000 for ML-100K)
    draw_fraction: float = 0.6  # M = round(draw_fraction * N) per sub-sampler
    n_clusters: int = 10  # K for K-means
    penalty: float = 0.95  # weight factor per extra occurrence in the pool; 1.0 = no penalty
    kmeans_iters: int = 50

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")
        if not 0.0 < self.draw_fraction <= 1.0:
            raise ValueError(f"draw_fraction must be in (0, 1], got {self.draw_fraction}")
        if self.n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {self.n_clusters}")
        if not 0.0 < self.penalty <= 1.0:
            raise ValueError(f"penalty must be in (0, 1], got {self.penalty}")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1, got {self.kmeans_iters}")

    @property
    def draws_per_sampler(self) -> int:
        return max(1, round(self.draw_fraction * self.budget))


@dataclass
class SampledUsers:
    method: str
    users: np.ndarray  # (N,) int64 dataset user indices, one per draw (repeats allowed)
    config: SamplingConfig
    seed: int
    n_eligible: int
    stats: dict[str, float | int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[int, int]:
        """user index -> number of draws (each draw yields one example per task)."""
        return dict(sorted(Counter(int(u) for u in self.users).items()))

    @property
    def n_unique(self) -> int:
        return len(np.unique(self.users))


# ---- pure pieces ---------------------------------------------------------------------


def train_like_counts(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(users, n_likes): every user with at least one training like, ascending index."""
    pairs = sorted((u, len(s.train_likes)) for u, s in split.users.items() if s.train_likes)
    if not pairs:
        raise ValueError("no user has a training like: nothing to sample from")
    users, counts = zip(*pairs)
    return np.asarray(users, dtype=np.int64), np.asarray(counts, dtype=np.int64)


def importance_probabilities(n_likes: np.ndarray) -> np.ndarray:
    """P(u) proportional to ln(1 + n_u); raises if any count is < 1 (user not eligible)."""
    n = np.asarray(n_likes, dtype=np.float64)
    if n.ndim != 1 or len(n) == 0:
        raise ValueError("n_likes must be a non-empty 1-D array")
    if np.any(n < 1):
        raise ValueError("every eligible user needs at least one training like (got a count < 1)")
    w = np.log1p(n)
    return w / w.sum()


def importance_draws(users: np.ndarray, n_likes: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(users, size=m, replace=True, p=importance_probabilities(n_likes))


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    """Cluster labels (n,) from Lloyd's K-means with k-means++ seeding. k is capped at the
    number of distinct rows, so duplicate vectors (e.g. a popularity backbone) never leave
    a cluster empty."""
    x = np.asarray(x, dtype=np.float64)
    k = min(k, len(np.unique(x, axis=0)))
    centers = _kmeanspp(x, k, rng)
    labels = np.full(len(x), -1)
    for _ in range(iters):
        d2 = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(-1)  # (n, k)
        new = d2.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            # an emptied cluster takes the point farthest from its centre
            centers[c] = members.mean(0) if len(members) else x[d2.min(1).argmax()]
    return labels


def _kmeanspp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = ((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1).min(1)
        p = d2 / d2.sum()
        centers.append(x[rng.choice(len(x), p=p)])
    return np.array(centers)


def cluster_allocation(labels: np.ndarray, m: int) -> dict[int, int]:
    """Draws per cluster: round(|C_k| / |U| * M) (so the total can differ from M by rounding)."""
    ids, sizes = np.unique(labels, return_counts=True)
    total = sizes.sum()
    return {int(c): int(round(s / total * m)) for c, s in zip(ids, sizes)}


def cluster_draws(users: np.ndarray, labels: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    out = [rng.choice(users[labels == c], size=n, replace=True) for c, n in cluster_allocation(labels, m).items() if n]
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def repetition_weights(pool: np.ndarray, penalty: float) -> np.ndarray:
    """Weight of each pool entry: penalty ** (c - 1), c = occurrences of its user in the pool."""
    _, inverse, counts = np.unique(pool, return_inverse=True, return_counts=True)
    return np.power(penalty, counts[inverse] - 1.0)


def penalized_draw(pool: np.ndarray, n: int, penalty: float, rng: np.random.Generator) -> np.ndarray:
    if len(pool) == 0:
        raise ValueError("the sampling pool is empty")
    w = repetition_weights(pool, penalty)
    replace = len(pool) < n
    if replace:
        log.warning("pool of %d entries is smaller than the budget %d: drawing with replacement", len(pool), n)
    return rng.choice(pool, size=n, replace=replace, p=w / w.sum())


def uniform_draws(users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(users, size=n, replace=True)


def sample(
    users: np.ndarray,
    n_likes: np.ndarray,
    embeddings: np.ndarray | None,
    config: SamplingConfig,
    seed: int,
) -> SampledUsers:
    """Run ``config.method`` over eligible ``users`` (embeddings: one row per entry of users)."""
    users = np.asarray(users, dtype=np.int64)
    if len(users) != len(n_likes):
        raise ValueError(f"users ({len(users)}) and n_likes ({len(n_likes)}) differ in length")
    rng = np.random.default_rng(seed)
    n, m = config.budget, config.draws_per_sampler
    stats: dict[str, float | int] = {}
    if config.method == "uniform":
        drawn = uniform_draws(users, n, rng)
    elif config.method == "importance":
        drawn = importance_draws(users, n_likes, n, rng)
    else:
        if embeddings is None or len(embeddings) != len(users):
            raise ValueError(f"{config.method} sampling needs one embedding row per eligible user")
        labels = kmeans(embeddings, config.n_clusters, rng, config.kmeans_iters)
        stats["clusters"] = int(labels.max() + 1)
        if config.method == "clustering":
            drawn = cluster_draws(users, labels, n, rng)
        else:
            pool = np.concatenate([importance_draws(users, n_likes, m, rng), cluster_draws(users, labels, m, rng)])
            stats["pool_size"] = len(pool)
            stats["pool_unique"] = int(len(np.unique(pool)))
            drawn = penalized_draw(pool, n, config.penalty, rng)
    out = SampledUsers(config.method, drawn.astype(np.int64), config, seed, len(users), stats)
    out.stats["unique"] = out.n_unique
    log.info("sampled %d draws of %d unique users (%s, seed %d)", len(drawn), out.n_unique, config.method, seed)
    return out


# ---- edges: backbone vectors and files ----------------------------------------------


def user_vectors(backbone, split: Split, users: Sequence[int], backbone_user_ids: Sequence[str] | None = None) -> np.ndarray:
    """Backbone vectors for ``users`` (dataset indices), one row each.

    Uses ``backbone.user_embeddings()`` when the model has them, after checking that its
    rows are the dataset's user indices (row count, and the artifact's user id list when
    given); sequence models without user vectors fall back to ``query(u, train_likes)``.
    """
    ds = split.dataset
    if backbone_user_ids is not None and list(backbone_user_ids) != list(ds.user_ids):
        raise ValueError("backbone user ids do not match the dataset's user index order: retrain the backbone")
    emb = backbone.user_embeddings()
    if emb is not None:
        if emb.shape[0] != ds.n_users:
            raise ValueError(f"backbone has {emb.shape[0]} user rows, dataset has {ds.n_users} users")
        return np.asarray(emb, dtype=np.float32)[np.asarray(users, dtype=np.int64)]
    return np.stack([backbone.query(int(u), split.users[int(u)].train_likes) for u in users]).astype(np.float32)


def sample_users(split: Split, config: SamplingConfig, seed: int, backbone=None, backbone_user_ids=None) -> SampledUsers:
    """Eligible users (those with training likes) of ``split`` sampled by ``config``."""
    users, n_likes = train_like_counts(split)
    emb = None
    if config.method in ("adaptive", "clustering"):
        if backbone is None:
            raise ValueError(f"{config.method} sampling needs a backbone for user vectors")
        emb = user_vectors(backbone, split, users, backbone_user_ids)
    return sample(users, n_likes, emb, config, seed)


def save_sampled(sampled: SampledUsers, split: Split, path: Path) -> Path:
    """Write the sampled users and their draw counts as JSON (atomically)."""
    ds = split.dataset
    doc = {
        "method": sampled.method,
        "seed": sampled.seed,
        "config": asdict(sampled.config),
        "dataset": ds.name,
        "data_fingerprint": ds.fingerprint,
        "n_eligible": sampled.n_eligible,
        "n_draws": len(sampled.users),
        "n_unique": sampled.n_unique,
        "stats": sampled.stats,
        "counts": {ds.user_ids[u]: c for u, c in sampled.counts.items()},
    }
    return write_json_atomic(Path(path), doc)


def load_sampled_counts(path: Path, split: Split) -> dict[int, int]:
    """user index -> draw count from a file written by ``save_sampled``."""
    doc = json.loads(Path(path).read_text())
    if doc.get("data_fingerprint") != split.dataset.fingerprint:
        raise ValueError(f"{path}: sampled on different data (fingerprint mismatch)")
    idx = split.dataset.user_index
    missing = [u for u in doc["counts"] if u not in idx]
    if missing:
        raise ValueError(f"{path}: unknown user id(s) {missing[:5]}")
    return {idx[u]: int(c) for u, c in doc["counts"].items()}

