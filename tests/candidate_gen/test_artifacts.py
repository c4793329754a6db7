"""Saved backbones: round trip, atomic replacement, refusing broken folders, ensure_backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from candidate_gen.artifacts import (
    FORMAT_VERSION,
    ArtifactError,
    backbone_dir,
    ensure_backbone,
    load_backbone,
    save_backbone,
)
from candidate_gen.evaluate import evaluate_backbone
from candidate_gen.split import leave_one_out
from candidate_gen.train import MODELS

from .conftest import planted_dataset


def _save(trained, split, model: str, folder: Path) -> Path:
    backbone, metrics = trained[model]
    ds = split.dataset
    meta = {"dataset": ds.name, "fingerprint": ds.fingerprint, "config": metrics["config"],
            "validation": metrics["validation"], "train_seconds": metrics["train_seconds"]}  # fmt: skip
    return save_backbone(backbone, folder, meta, item_ids=ds.item_ids, user_ids=ds.user_ids)


@pytest.mark.parametrize("model", MODELS)
def test_round_trip_scores_identically(trained, planted, tmp_path, model):
    original = trained[model][0]
    folder = _save(trained, planted, model, tmp_path / model)
    loaded = load_backbone(folder)
    assert loaded.meta["format_version"] == FORMAT_VERSION and loaded.meta["model"] == model
    assert loaded.meta["fingerprint"] == planted.dataset.fingerprint
    assert loaded.item_ids == planted.dataset.item_ids and loaded.user_ids == planted.dataset.user_ids
    np.testing.assert_array_equal(loaded.backbone.item_vectors(), original.item_vectors())
    for u in (0, 1, 80):  # 80 has no training likes
        hist = [e.item for e in planted.users[u].context("test") if e.liked]
        np.testing.assert_array_equal(loaded.backbone.query(u, hist), original.query(u, hist))
    assert evaluate_backbone(loaded.backbone, planted) == evaluate_backbone(original, planted)
    if original.user_embeddings() is not None:
        np.testing.assert_array_equal(loaded.backbone.user_embeddings(), original.user_embeddings())


def test_saving_replaces_atomically_and_a_failed_save_keeps_the_old(trained, planted, tmp_path):
    folder = _save(trained, planted, "mf", tmp_path / "mf")
    _save(trained, planted, "mf", folder)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mf"]  # no temp or old siblings left
    with pytest.raises(ValueError, match="item ids"):
        save_backbone(trained["mf"][0], folder, {"dataset": "x", "fingerprint": "y"}, item_ids=["a"], user_ids=["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mf"]
    assert load_backbone(folder).meta["fingerprint"] == planted.dataset.fingerprint


def test_save_requires_the_ids_and_provenance(trained, planted, tmp_path):
    with pytest.raises(ValueError, match="fingerprint"):
        save_backbone(trained["pop"][0], tmp_path / "p", {"dataset": "x"}, item_ids=planted.dataset.item_ids, user_ids=[])
    with pytest.raises(ValueError, match="item_ids"):
        save_backbone(trained["pop"][0], tmp_path / "p", {"dataset": "x", "fingerprint": "y"})


def test_missing_folder_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="folder missing"):
        load_backbone(tmp_path / "nope")


@pytest.mark.parametrize(
    ("model", "name"),
    [("pop", "artifact.json"), ("pop", "item_ids.json"), ("mf", "item_vectors.npy"), ("mf", "user_vectors.npy"),
     ("lightgcn", "user_known.npy"), ("sasrec", "model.pt")],
)  # fmt: skip
def test_missing_file_is_an_artifact_error(trained, planted, tmp_path, model, name):
    folder = _save(trained, planted, model, tmp_path / model)
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match=name):
        load_backbone(folder)


@pytest.mark.parametrize(
    ("model", "name", "content"),
    [("pop", "artifact.json", b"{not json"), ("mf", "item_vectors.npy", b"\x93NUMPY garbage"),
     ("sasrec", "model.pt", b"PK\x03\x04 truncated"), ("pop", "item_ids.json", b"[\"only-one\"]")],
)  # fmt: skip
def test_corrupt_file_is_an_artifact_error(trained, planted, tmp_path, model, name, content):
    folder = _save(trained, planted, model, tmp_path / model)
    (folder / name).write_bytes(content)
    with pytest.raises(ArtifactError):
        load_backbone(folder)


def test_unknown_format_version_is_refused(trained, planted, tmp_path):
    folder = _save(trained, planted, "pop", tmp_path / "pop")
    meta = json.loads((folder / "artifact.json").read_text())
    (folder / "artifact.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ArtifactError, match="format_version"):
        load_backbone(folder)


def test_sasrec_weights_of_another_shape_are_refused(trained, planted, tmp_path):
    folder = _save(trained, planted, "sasrec", tmp_path / "sasrec")
    meta = json.loads((folder / "artifact.json").read_text())
    meta["config"]["emb_dim"] = 32
    (folder / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cannot rebuild"):
        load_backbone(folder)


def test_backbone_dir_layout(tmp_path):
    assert backbone_dir(tmp_path, "ml-100k", "mf") == tmp_path / "backbones" / "ml-100k" / "mf"


def test_ensure_backbone_trains_once_then_loads(planted, tmp_path):
    first = ensure_backbone(tmp_path, planted, "pop", progress=False)
    folder = backbone_dir(tmp_path, planted.dataset.name, "pop")
    assert (folder / "artifact.json").is_file() and "NDCG@10" in first.meta["test"]
    stamp = (folder / "artifact.json").stat().st_mtime_ns
    second = ensure_backbone(tmp_path, planted, "pop", progress=False)
    assert (folder / "artifact.json").stat().st_mtime_ns == stamp and second.meta == first.meta
    np.testing.assert_array_equal(second.backbone.item_vectors(), first.backbone.item_vectors())


def test_ensure_backbone_retrains_on_other_data_or_a_broken_artifact(planted, tmp_path):
    ensure_backbone(tmp_path, planted, "pop", progress=False)
    other = leave_one_out(planted_dataset(seed=1))  # same name, other interactions
    assert other.dataset.fingerprint != planted.dataset.fingerprint
    again = ensure_backbone(tmp_path, other, "pop", progress=False)
    assert again.meta["fingerprint"] == other.dataset.fingerprint
    folder = backbone_dir(tmp_path, planted.dataset.name, "pop")
    (folder / "item_vectors.npy").write_bytes(b"broken")
    fixed = ensure_backbone(tmp_path, other, "pop", progress=False)
    np.testing.assert_array_equal(fixed.backbone.item_vectors(), again.backbone.item_vectors())
