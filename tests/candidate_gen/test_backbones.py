"""Backbone contract, learning on planted data, reproducibility and train-split-only training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from candidate_gen.base import Backbone
from candidate_gen.data import Dataset
from candidate_gen.evaluate import evaluate_backbone
from candidate_gen.lightgcn import normalized_adjacency
from candidate_gen.mf import MFConfig
from candidate_gen.sasrec import SASRecConfig, training_windows
from candidate_gen.split import leave_one_out
from candidate_gen.train import MODELS, make_config, train_backbone

from .conftest import TINY, planted_dataset, random_ndcg10

LEARNED = ("mf", "lightgcn", "sasrec")


@pytest.mark.parametrize("model", MODELS)
def test_backbone_contract(trained, planted, model):
    backbone, metrics = trained[model]
    assert isinstance(backbone, Backbone) and backbone.name == model
    items = backbone.item_vectors()
    assert items.dtype == np.float32 and items.shape[0] == planted.dataset.n_items
    q = backbone.query(3, planted.users[3].train_likes)
    assert q.shape == (items.shape[1],) and np.isfinite(q).all()
    some = [5, 0, 42]
    np.testing.assert_allclose(backbone.score(3, planted.users[3].train_likes, some), items[some] @ q, rtol=1e-6)
    users = backbone.user_embeddings()
    if model in ("mf", "lightgcn"):
        assert users.shape == (planted.dataset.n_users, items.shape[1])
    else:
        assert users is None
    assert 0 <= metrics["best_epoch"] <= metrics["epochs_run"] and "NDCG@10" in metrics["validation"]


@pytest.mark.parametrize("model", MODELS)
def test_each_backbone_beats_random(trained, planted, model):
    ndcg = evaluate_backbone(trained[model][0], planted)["metrics"]["NDCG@10"]
    assert ndcg > 2 * random_ndcg10(planted)


@pytest.mark.parametrize("model", LEARNED)
def test_learned_backbones_find_the_groups_pop_cannot_see(trained, planted, model):
    pop = evaluate_backbone(trained["pop"][0], planted)["metrics"]["NDCG@10"]
    ndcg = evaluate_backbone(trained[model][0], planted)["metrics"]["NDCG@10"]
    assert ndcg > pop + 0.1


@pytest.mark.parametrize("model", LEARNED)
def test_seeded_training_is_reproducible(trained, planted, model):
    again, _ = train_backbone(planted, model, TINY[model], seed=0, progress=False)
    np.testing.assert_array_equal(again.item_vectors(), trained[model][0].item_vectors())
    other, _ = train_backbone(planted, model, TINY[model], seed=1, progress=False)
    assert not np.array_equal(other.item_vectors(), trained[model][0].item_vectors())


def _with_other_test_items(ds: Dataset) -> Dataset:
    """The same data with every user's test like moved to an item that user never consumed."""
    split = leave_one_out(ds)
    items = ds.items.copy()
    for u, s in split.users.items():
        if s.test_pos is None:
            continue
        ev = s.events[s.test_pos]
        row = np.flatnonzero((ds.users == u) & (ds.items == ev.item) & (ds.timestamps == ev.timestamp))[0]
        consumed = {e.item for e in s.events}
        items[row] = next(i for i in range(ds.n_items) if i not in consumed)
    fields = {k: getattr(ds, k) for k in ("name", "user_ids", "item_ids", "titles", "users", "ratings", "timestamps")}
    return Dataset(**fields, items=items, fingerprint=ds.fingerprint + "-moved")


@pytest.mark.parametrize("model", ("pop", "mf"))
def test_test_likes_never_reach_training(trained, model):
    moved = leave_one_out(_with_other_test_items(planted_dataset()))
    backbone, _ = train_backbone(moved, model, TINY[model], seed=0, progress=False)
    np.testing.assert_array_equal(backbone.item_vectors(), trained[model][0].item_vectors())


def test_pop_counts_training_likes(trained, planted):
    pop = trained["pop"][0]
    _, items = planted.train_interactions()
    np.testing.assert_array_equal(pop.counts, np.bincount(items, minlength=planted.dataset.n_items))
    assert pop.query(None, []).tolist() == [1.0]


@pytest.mark.parametrize("model", ("mf", "lightgcn"))
def test_embedding_query_uses_user_row_or_history_mean(trained, planted, model):
    bb = trained[model][0]
    items, users = bb.item_vectors(), bb.user_embeddings()
    np.testing.assert_array_equal(bb.query(3, [0, 1]), users[3])  # known user: trained row
    newbie = planted.dataset.user_index["u80"]  # only valid + test likes: never trained
    assert not bb.known[newbie]
    np.testing.assert_allclose(bb.query(newbie, [4, 7]), items[[4, 7]].mean(axis=0))
    np.testing.assert_allclose(bb.query(None, [2]), items[2])
    np.testing.assert_array_equal(bb.query(None, []), np.zeros(items.shape[1], dtype=np.float32))


def test_sasrec_query_reads_the_sequence(trained):
    bb = trained["sasrec"][0]
    assert not np.allclose(bb.query(None, [1, 2, 3]), bb.query(None, [3, 2, 1]))  # order matters
    batch = bb.query_batch([[1, 2, 3], [], list(range(40))])
    np.testing.assert_allclose(batch[0], bb.query(None, [1, 2, 3]), rtol=1e-5, atol=1e-6)
    assert np.isfinite(batch).all()  # an empty history must not turn into NaN
    np.testing.assert_allclose(batch[2], bb.query(7, list(range(30, 40))), rtol=1e-5, atol=1e-6)  # max_len 10
    with pytest.raises(ValueError, match="out of range"):
        bb.query(None, [10_000])


def test_training_windows_make_every_later_like_a_target_once():
    inputs, targets = training_windows([list(range(23)), [5], [7, 8]], max_len=10)
    got = sorted(int(t) - 1 for t in targets[targets > 0])
    assert got == sorted(list(range(1, 23)) + [8])
    assert inputs.shape == targets.shape == (4, 10)
    rows = np.flatnonzero(targets[:, -1] == 23)  # newest window: input ends at item 21, target 22
    assert inputs[rows[0], -1] - 1 == 21


def test_lightgcn_adjacency_is_symmetric_normalised():
    users, items = np.array([0, 0, 1]), np.array([0, 1, 1])
    adj = normalized_adjacency(users, items, n_users=2, n_items=2).to_dense()
    torch.testing.assert_close(adj, adj.T)
    # edge user 0 (degree 2) - item 1 (degree 2): 1 / sqrt(2 * 2)
    assert adj[0, 2 + 1].item() == pytest.approx(0.5)
    assert adj[1, 2 + 0].item() == 0.0


def test_configs_name_the_bad_field():
    with pytest.raises(ValueError, match="emb_dim"):
        MFConfig(emb_dim=0)
    with pytest.raises(ValueError, match="dropout"):
        SASRecConfig(dropout=1.0)
    with pytest.raises(ValueError, match="n_heads"):
        SASRecConfig(emb_dim=64, n_heads=3)
    with pytest.raises(ValueError, match="bogus"):
        make_config("mf", {"bogus": 1})
    with pytest.raises(ValueError, match="unknown backbone 'bert4rec'"):
        make_config("bert4rec")


def test_stopping_at_the_cap_while_improving_warns_and_is_recorded(planted, caplog):
    import logging

    from candidate_gen.train import train_backbone

    cfg = {**TINY["mf"], "epochs": 1, "eval_every": 1}  # one validation round: the best is the last
    with caplog.at_level(logging.WARNING, logger="candidate_gen.train"):
        _, metrics = train_backbone(planted, "mf", cfg, progress=False)
    assert metrics["best_is_last"] and metrics["stopped_by"] == "cap" and metrics["epoch_cap"] == 1
    assert metrics["warnings"] and "still improving" in metrics["warnings"][0]
    assert any("still improving" in r.message for r in caplog.records)


@pytest.mark.parametrize("model", ["mf", "lightgcn", "sasrec"])
def test_default_caps_are_generous_and_patience_ends_training(model, trained):
    from candidate_gen.train import make_config

    assert make_config(model).epochs >= 1000
    metrics = trained[model][1]  # the tiny runs stop by patience, without a warning
    assert metrics["stopped_by"] in ("patience", "cap") and (metrics["warnings"] == []) == (not metrics["best_is_last"])
