import faiss
import numpy as np
import pytest

from candidate_gen.index import ItemIndex

KINDS = ["exact", "hnsw", "ivf"]


def brute_force(vectors, queries, k, exclude=None):
    scores = queries @ vectors.T
    if exclude is not None:
        for r, ex in enumerate(exclude):
            scores[r, list(ex)] = -np.inf
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, 1)


def embedding_like(rng, n, d=32, rank=8):
    """Low intrinsic dimension and skewed norms, like trained MF/LightGCN embeddings."""
    z = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) / np.sqrt(rank)
    x = z + 0.3 * rng.standard_normal((n, d))
    return (x * rng.lognormal(0.0, 0.3, size=(n, 1))).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_exact_matches_brute_force(rng):
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    index = ItemIndex.build(vectors)
    ids, scores = index.search(queries, 10)
    want_ids, want_scores = brute_force(vectors, queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_exact_matches_brute_force_with_exclusions(rng):
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    exclude = [set(rng.choice(300, size=rng.integers(0, 120), replace=False).tolist()) for _ in range(20)]
    ids, scores = ItemIndex.build(vectors).search(queries, 15, exclude)
    want_ids, want_scores = brute_force(vectors, queries, 15, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_single_query_vector_gives_one_row(rng):
    vectors = rng.standard_normal((50, 4)).astype(np.float32)
    ids, scores = ItemIndex.build(vectors).search(vectors[3], 5, [{3}])
    assert ids.shape == scores.shape == (1, 5)
    assert 3 not in ids[0]
    np.testing.assert_array_equal(ids, brute_force(vectors, vectors[3:4], 5, [{3}])[0])


@pytest.mark.parametrize(("kind", "params"), [("hnsw", {}), ("ivf", {"nlist": 64, "nprobe": 24})])
def test_approximate_recall_against_exact(rng, kind, params):
    vectors = embedding_like(rng, 5000)
    queries = embedding_like(rng, 100)
    exact_ids, _ = ItemIndex.build(vectors).search(queries, 20)
    index = ItemIndex.build(vectors, kind, **params)
    ids, scores = index.search(queries, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(ids, exact_ids)])
    assert recall >= 0.9, f"{kind} recall@20 {recall:.3f}"
    # scores are true inner products, best first, not L2 distances on the augmented vectors
    true = np.einsum("md,mkd->mk", queries, vectors[ids])
    np.testing.assert_allclose(scores, true, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


@pytest.mark.parametrize("kind", KINDS)
def test_exclusions_never_returned_even_when_most_items_excluded(rng, kind):
    vectors = embedding_like(rng, 400, d=8)
    queries = embedding_like(rng, 10, d=8)
    # 390 of 400 excluded for some queries: the approximate kinds must widen their search
    exclude = [set(rng.choice(400, size=size, replace=False).tolist()) for size in [390, 0, 50, 385, 200] * 2]
    # ivf probes one list of ~25 items: a short row must fall back to the whole catalog
    index = ItemIndex.build(vectors, kind, **({"nlist": 16, "nprobe": 1} if kind == "ivf" else {}))
    ids, scores = index.search(queries, 10, exclude)
    for row, ex in zip(ids, exclude):
        assert not set(row.tolist()) & ex
        assert (row >= 0).all() and len(set(row.tolist())) == 10
    # row 0 leaves exactly 10 items: every kind must find all of them, best first
    want_ids, _ = brute_force(vectors, queries, 10, exclude)
    np.testing.assert_array_equal(ids[0], want_ids[0])


@pytest.mark.parametrize("kind", KINDS)
def test_fewer_than_k_left_are_padded(rng, kind):
    vectors = rng.standard_normal((10, 4)).astype(np.float32)
    index = ItemIndex.build(vectors, kind, **({"nlist": 2} if kind == "ivf" else {}))
    ids, scores = index.search(rng.standard_normal((2, 4)), 5, [set(range(7)), set()])
    assert sorted(ids[0, :3].tolist()) == [7, 8, 9]
    assert ids[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 3:]).all() and np.isfinite(scores[0, :3]).all()
    assert (ids[1] >= 0).all()


def test_k_larger_than_catalog_is_padded(rng):
    vectors = rng.standard_normal((4, 3)).astype(np.float32)
    ids, scores = ItemIndex.build(vectors).search(vectors[:1], 6)
    assert sorted(ids[0, :4].tolist()) == [0, 1, 2, 3]
    assert ids[0, 4:].tolist() == [-1, -1] and np.isneginf(scores[0, 4:]).all()


def test_search_restores_faiss_thread_count(rng):
    vectors = rng.standard_normal((20, 4)).astype(np.float32)
    before = faiss.omp_get_max_threads()
    index = ItemIndex.build(vectors, threads=1)
    index.search(vectors[:2], 3)
    index.search(vectors[:2], 3, threads=None)
    assert faiss.omp_get_max_threads() == before


def test_tune_changes_query_parameters(rng):
    index = ItemIndex.build(embedding_like(rng, 200), "hnsw", ef_search=16)
    index.tune(ef_search=64)
    assert index.params["ef_search"] == 64
    with pytest.raises(ValueError, match="nprobe"):
        index.tune(nprobe=4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: ItemIndex.build(v, "annoy"), "unknown index kind 'annoy'"),
        (lambda v: ItemIndex.build(v, "hnsw", nprobe=3), r"unknown parameter\(s\) \['nprobe'\]"),
        (lambda v: ItemIndex.build(v, "hnsw", m=0), "m must be a positive integer"),
        (lambda v: ItemIndex.build(v, threads=0), "threads must be"),
        (lambda v: ItemIndex.build(v[0]), r"\(n, d\)"),
        (lambda v: ItemIndex.build(np.where(v > 0, np.nan, v)), "NaN"),
        (lambda v: ItemIndex.build(v).search(np.ones(5), 3), r"shape \(m, 4\)"),
        (lambda v: ItemIndex.build(v).search(v[:2], 0), "k must be a positive integer"),
        (lambda v: ItemIndex.build(v).search(v[:2], 3, [{1}]), "one per query"),
        (lambda v: ItemIndex.build(v).search(v[0], 3, {1}), "one per query"),
    ],
)
def test_bad_input_is_named(rng, call, message):
    vectors = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        call(vectors)
