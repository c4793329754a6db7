"""FAISS index over item vectors: top-k items by inner product, with per-query exclusions.

Every backbone scores by inner product (see ``candidate_gen.base``), so one index type
serves them all. ``kind="exact"`` (IndexFlatIP) is right for catalogs up to ~1e5-1e6
items. The approximate kinds (HNSW, IVF) are built for L2/cosine; backbone embeddings are
unnormalised, so they index the MIPS-to-L2 transform: items get an extra coordinate
``sqrt(max|x|^2 - |x|^2)`` (all augmented items then share one norm) and queries a 0, which
makes ascending L2 distance equal descending inner product. Scores returned are always the
true inner products, recomputed from the original vectors.

Threads: FAISS parallelises a search over queries with OpenMP. For one query at a time
(a web worker) the OpenMP start-up costs more than it saves (about 2 ms with one thread vs
13-16 ms with two on a 2-core machine for 1e5 x 64), so ``threads=1`` is the default; use
``threads=None`` (all cores) for batched offline search. FAISS' thread count is
process-wide, so each search sets it and restores the previous value afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import faiss
import numpy as np

log = logging.getLogger(__name__)

Kind = Literal["exact", "hnsw", "ivf"]

# Tunables per kind; build() rejects anything else so a typo fails loudly.
_PARAMS: dict[str, dict[str, int | None]] = {
    "exact": {},
    # m: graph degree; ef_construction: build-time beam; ef_search: query beam (raised
    # to at least the number of results fetched).
    "hnsw": {"m": 32, "ef_construction": 100, "ef_search": 256},
    # nlist None -> about 4 * sqrt(n) lists; nprobe: lists visited per query.
    "ivf": {"nlist": None, "nprobe": 32},
}
_IVF_TRAIN_PER_LIST = 40  # k-means sample: points per list (FAISS warns below 39); more costs build time


@contextmanager
def omp_threads(threads: int | None) -> Iterator[None]:
    """Run the block with FAISS using ``threads`` OpenMP threads (None: leave as is)."""
    if threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class ItemIndex:
    """Items keyed by their index 0..n-1; ``search`` returns true inner-product scores."""

    def __init__(
        self,
        index: faiss.Index,
        vectors: np.ndarray,
        kind: Kind,
        params: dict[str, int | None],
        threads: int | None,
    ) -> None:
        # Use ItemIndex.build; this takes an already-populated FAISS index.
        self._index = index
        self._vectors = vectors  # (n, d) float32, original (not augmented) vectors
        self.kind = kind
        self.params = params
        self.threads = threads
        # norm shared by every MIPS-augmented item (see _augment_items)
        self._radius = float(np.sqrt(np.einsum("nd,nd->n", vectors, vectors).max()))

    @property
    def n_items(self) -> int:
        return self._vectors.shape[0]

    @property
    def dim(self) -> int:
        return self._vectors.shape[1]

    @classmethod
    def build(
        cls, vectors: np.ndarray, kind: Kind = "exact", *, threads: int | None = 1, **params: int | None
    ) -> ItemIndex:
        """Index ``vectors`` (n, d); ``params`` are the kind's tunables (see ``_PARAMS``)."""
        if kind not in _PARAMS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {sorted(_PARAMS)}")
        unknown = sorted(set(params) - set(_PARAMS[kind]))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for index kind {kind!r}; "
                             f"expected some of {sorted(_PARAMS[kind])}")
        for name, value in params.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"index parameter {name} must be a positive integer, got {value!r}")
        _check_threads(threads)
        vectors = _check_vectors(vectors)
        full = {**_PARAMS[kind], **params}
        n, d = vectors.shape
        start = time.perf_counter()
        data = vectors if kind == "exact" else _augment_items(vectors)
        with omp_threads(threads):
            if kind == "exact":
                inner = faiss.IndexFlatIP(d)
            elif kind == "hnsw":
                inner = _hnsw(d, full)
            else:
                full["nlist"] = _nlist(n, full["nlist"])
                inner = _ivf(data, full)
            index = faiss.IndexIDMap2(inner)
            index.add_with_ids(data, np.arange(n, dtype=np.int64))
        log.info("built %s index over %d x %d items in %.2fs", kind, n, d, time.perf_counter() - start)
        return cls(index, vectors, kind, full, threads)

    def tune(self, **params: int) -> None:
        """Change query-time tunables (``ef_search`` for hnsw, ``nprobe`` for ivf)."""
        allowed = {"hnsw": {"ef_search"}, "ivf": {"nprobe"}}.get(self.kind, set())
        for name, value in params.items():
            if name not in allowed:
                raise ValueError(f"{name!r} is not a query-time parameter of a {self.kind!r} index; "
                                 f"expected some of {sorted(allowed)}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            self.params[name] = value

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[int]] | None = None,
        *,
        threads: int | None = -1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per query by inner product, skipping each query's ``exclude`` set.

        ``queries`` is (m, d) or (d,) (treated as m = 1). Returns ``(ids, scores)``, both
        (m, k), best first; rows with fewer than k eligible items end in id -1, score -inf.
        ``threads`` overrides the index's thread count for this call (-1: keep the index's).
        """
        q = self._check_queries(queries)
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        excluded = self._check_exclude(exclude, q.shape[0])
        if threads != -1:
            _check_threads(threads)
        m = q.shape[0]
        out_ids = np.full((m, k), -1, dtype=np.int64)
        out_scores = np.full((m, k), -np.inf, dtype=np.float32)
        # Over-fetch by the largest exclusion so an exact search fills every row in one
        # pass; an approximate one may return fewer, so short rows are widened and retried.
        fetch = min(self.n_items, k + max((len(e) for e in excluded), default=0))
        rows = np.arange(m)
        with omp_threads(self.threads if threads == -1 else threads):
            while rows.size:
                ids, scores = self._search_raw(q[rows], fetch)
                short, exhausted = [], False
                for r, row_ids, row_scores in zip(rows, ids, scores, strict=True):
                    keep = row_ids >= 0
                    if excluded[r].size:
                        keep &= ~np.isin(row_ids, excluded[r])
                    got = min(k, int(keep.sum()))
                    out_ids[r, :got] = row_ids[keep][:got]
                    out_scores[r, :got] = row_scores[keep][:got]
                    if got < k:
                        short.append(r)
                        # -1s: the index returned all it could reach (IVF's probed lists
                        # ran dry); asking for more won't help, so go to the whole catalog
                        exhausted |= bool((row_ids < 0).any())
                if fetch >= self.n_items or not short:
                    break
                rows = np.asarray(short)
                fetch = self.n_items if exhausted else min(self.n_items, 2 * fetch)
        return out_ids, out_scores

    def _search_raw(self, q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, true IP scores) for ``fetch`` results per query, best first, -1 padded."""
        if self.kind == "exact":
            scores, ids = self._index.search(q, fetch)
            return ids, scores
        if fetch >= self.n_items:
            # Widened to the whole catalog: scoring everything is exact and cheaper than
            # a graph/list search asked for every item.
            return _brute_force(q, self._vectors, fetch)
        # Query [q, 0], scaled onto the sphere of radius max|x| where the augmented items
        # lie. Scaling by s > 0 cannot change any L2 ranking among items (all have the same
        # norm), so HNSW is unaffected, but the IVF coarse quantizer then ranks lists
        # mostly by inner product with their centroid rather than favouring centroids near
        # the origin; on a synthetic 1e5 x 64 set it lifted recall@100 at nprobe=64 from
        # 0.52 to 0.72.
        aug = np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)])
        norms = np.linalg.norm(aug, axis=1, keepdims=True)
        aug = (aug * (self._radius / np.maximum(norms, 1e-30))).astype(np.float32)
        if self.kind == "hnsw":
            sp = faiss.SearchParametersHNSW(efSearch=max(self.params["ef_search"], fetch))
        else:
            sp = faiss.SearchParametersIVF(nprobe=self.params["nprobe"])
        _, ids = self._index.search(aug, fetch, params=sp)
        # Recompute true inner products and re-sort: the L2 order is the IP order only up
        # to float error, and callers want IP scores, not distances.
        safe = np.where(ids >= 0, ids, 0)
        scores = np.einsum("md,mkd->mk", q, self._vectors[safe])
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}) or ({self.dim},), "
                             f"got {np.shape(queries)}")
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or infinite values")
        return np.ascontiguousarray(q)

    def _check_exclude(self, exclude: Sequence[Collection[int]] | None, m: int) -> list[np.ndarray]:
        if exclude is None:
            return [np.empty(0, dtype=np.int64)] * m
        if isinstance(exclude, set | frozenset) or len(exclude) != m:
            raise ValueError(f"exclude must be a sequence of {m} collections (one per query), "
                             f"got {type(exclude).__name__} of length {len(exclude)}")
        return [np.fromiter(e, dtype=np.int64, count=len(e)) for e in exclude]


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"item vectors must be a non-empty (n, d) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("item vectors contain NaN or infinite values")
    return v


def _check_threads(threads: int | None) -> None:
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None (all cores), got {threads!r}")


def _augment_items(vectors: np.ndarray) -> np.ndarray:
    """MIPS-to-L2: append sqrt(max|x|^2 - |x|^2) so every item has norm max|x|."""
    sq = np.einsum("nd,nd->n", vectors, vectors)
    extra = np.sqrt(np.maximum(sq.max() - sq, 0.0))
    return np.hstack([vectors, extra[:, None]]).astype(np.float32)


def _hnsw(d: int, p: dict[str, int | None]) -> faiss.Index:
    inner = faiss.IndexHNSWFlat(d + 1, int(p["m"]))
    inner.hnsw.efConstruction = int(p["ef_construction"])
    inner.hnsw.efSearch = int(p["ef_search"])
    return inner


def _nlist(n: int, nlist: int | None) -> int:
    if nlist is None:
        nlist = int(4 * math.sqrt(n))
    return max(1, min(int(nlist), n))


def _ivf(augmented: np.ndarray, p: dict[str, int | None]) -> faiss.Index:
    n, d1 = augmented.shape
    quantizer = faiss.IndexFlatL2(d1)
    inner = faiss.IndexIVFFlat(quantizer, d1, int(p["nlist"]), faiss.METRIC_L2)
    # k-means on a sample: training on all of a 1e6 catalog adds minutes for no recall gain
    size = min(n, _IVF_TRAIN_PER_LIST * int(p["nlist"]))
    sample = augmented[np.random.default_rng(0).choice(n, size, replace=False)]
    inner.train(sample)
    inner.nprobe = int(p["nprobe"])
    return inner


def _brute_force(q: np.ndarray, vectors: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ vectors.T  # (m, n)
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :fetch]
    return ids.astype(np.int64), np.take_along_axis(scores, ids, 1).astype(np.float32)
