"""Trained backbones on disk: one self-describing, versioned folder per (dataset, model).

Layout of ``<home>/backbones/<dataset>/<model>/``::

    artifact.json      format_version, model, config, dataset, fingerprint, metrics, created
    item_vectors.npy   (n_items, d) float32, what a FAISS index is built from
    user_vectors.npy   (n_users, d) float32, MF / LightGCN only
    user_known.npy     (n_users,) bool, which user rows were trained (MF / LightGCN)
    model.pt           SASRec weights (its queries are computed from sequences)
    item_ids.json      external item id of each row
    user_ids.json      external user id of each row

A folder is written beside its target and renamed into place, so readers see either the
old artifact or the complete new one, never a half-written one.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from candidate_gen.base import Backbone
from candidate_gen.evaluate import evaluate_backbone
from candidate_gen.mf import EmbeddingBackbone
from candidate_gen.pop import PopBackbone
from candidate_gen.recency import CoLikes
from candidate_gen.recency_choice import choose_recency
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.sasrec import SASRec, SASRecBackbone, SASRecConfig
from candidate_gen.split import Split
from candidate_gen.train import train_backbone

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META = "artifact.json"


class ArtifactError(Exception):
    """A backbone folder is missing, incomplete, corrupt or of an unknown format."""


@dataclass
class LoadedBackbone:
    backbone: Backbone
    meta: dict
    item_ids: list[str]
    user_ids: list[str]


def backbone_dir(home: Path, dataset: str, model: str) -> Path:
    return Path(home) / "backbones" / dataset / model


def save_backbone(
    backbone: Backbone, folder: Path, meta: dict, *, item_ids: list[str] | None = None, user_ids: list[str] | None = None
) -> Path:
    """Write ``backbone`` to ``folder`` atomically.

    ``meta`` must name ``dataset`` and ``fingerprint`` and may carry ``config``, ``validation``,
    ``test``, ``train_seconds`` and anything else JSON-able. ``item_ids``/``user_ids`` are the
    dataset's external ids per row (``Dataset.item_ids``/``user_ids``); they may instead come
    as ``meta["item_ids"]``/``meta["user_ids"]``, which are then kept out of artifact.json.
    """
    meta = dict(meta)
    meta_items, meta_users = meta.pop("item_ids", None), meta.pop("user_ids", None)
    item_ids = item_ids if item_ids is not None else meta_items
    user_ids = user_ids if user_ids is not None else meta_users
    missing = [k for k in ("dataset", "fingerprint") if k not in meta]
    missing += [k for k, v in (("item_ids", item_ids), ("user_ids", user_ids)) if v is None]
    if missing:
        raise ValueError(f"save_backbone needs {', '.join(missing)} (pass item_ids=dataset.item_ids, user_ids=dataset.user_ids)")
    items = np.asarray(backbone.item_vectors(), dtype=np.float32)
    if items.shape[0] != len(item_ids):
        raise ValueError(f"{items.shape[0]} item vectors but {len(item_ids)} item ids")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write(tmp, backbone, items, meta, item_ids, user_ids)
        _swap_into_place(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s backbone to %s", backbone.name, folder)
    return folder


def _write(tmp: Path, backbone: Backbone, items: np.ndarray, meta: dict, item_ids: list[str], user_ids: list[str]) -> None:
    np.save(tmp / "item_vectors.npy", items)
    config = meta.get("config", {})
    if isinstance(backbone, EmbeddingBackbone):
        if backbone.user_embeddings().shape[0] != len(user_ids):
            raise ValueError(f"{backbone.user_embeddings().shape[0]} user vectors but {len(user_ids)} user ids")
        np.save(tmp / "user_vectors.npy", backbone.user_embeddings())
        np.save(tmp / "user_known.npy", backbone.known)
    elif isinstance(backbone, SASRecBackbone):
        torch.save(backbone.model.state_dict(), tmp / "model.pt")
        config = backbone.config_dict()  # the loader rebuilds the network from exactly this
    elif not isinstance(backbone, PopBackbone):
        raise ValueError(f"don't know how to save a {type(backbone).__name__}")
    (tmp / "item_ids.json").write_text(json.dumps(list(item_ids)))
    (tmp / "user_ids.json").write_text(json.dumps(list(user_ids)))
    record = {**meta, "format_version": FORMAT_VERSION, "model": backbone.name, "config": config}
    record.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    (tmp / META).write_text(json.dumps(record, indent=2, sort_keys=True))  # written last: marks completeness


def _swap_into_place(tmp: Path, folder: Path) -> None:
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        folder.rename(old)
    tmp.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_backbone(folder: Path) -> LoadedBackbone:
    """Load a saved backbone without retraining; ArtifactError says what is wrong otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no backbone artifact here (folder missing)")
    meta = _read_json(folder / META)
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ArtifactError(f"{folder / META}: unknown format_version {version!r} (this code reads {FORMAT_VERSION})")
    item_ids, user_ids = _read_json(folder / "item_ids.json"), _read_json(folder / "user_ids.json")
    items = _read_npy(folder / "item_vectors.npy")
    if items.ndim != 2 or items.shape[0] != len(item_ids):
        raise ArtifactError(f"{folder}: item_vectors.npy has shape {items.shape} but item_ids.json lists {len(item_ids)} items")
    try:
        backbone = _rebuild(folder, meta, items, len(user_ids))
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise ArtifactError(f"{folder}: cannot rebuild the {meta.get('model')!r} backbone: {e}") from e
    return LoadedBackbone(backbone, meta, item_ids, user_ids)


def _rebuild(folder: Path, meta: dict, items: np.ndarray, n_users: int) -> Backbone:
    model = meta.get("model")
    if model == "pop":
        return PopBackbone.from_vectors(items)
    if model in ("mf", "lightgcn"):
        users, known = _read_npy(folder / "user_vectors.npy"), _read_npy(folder / "user_known.npy")
        if users.shape[0] != n_users:
            raise ValueError(f"user_vectors.npy has {users.shape[0]} rows, user_ids.json lists {n_users}")
        return EmbeddingBackbone(model, items, users, known)
    if model == "sasrec":
        path = folder / "model.pt"
        if not path.is_file():
            raise ArtifactError(f"{path}: file missing")
        net = SASRec(items.shape[0], SASRecConfig(**meta["config"]))
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return SASRecBackbone(net)
    raise ArtifactError(f"{folder / META}: unknown model {model!r}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable or not JSON ({e})") from None


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file missing") from None
    except (OSError, ValueError, EOFError) as e:
        raise ArtifactError(f"{path}: unreadable array ({e})") from None


def ensure_backbone(
    home: Path, split: Split, model: str, seed: int = 0, config: dict | None = None, progress: bool = True
) -> LoadedBackbone:
    """Load ``<home>/backbones/<dataset>/<model>`` if it matches the data; else train, evaluate, save."""
    ds = split.dataset
    folder = backbone_dir(home, ds.name, model)
    if folder.exists():
        try:
            loaded = load_backbone(folder)
            if loaded.meta.get("fingerprint") == ds.fingerprint and loaded.meta.get("model") == model:
                return loaded
            log.info("%s: built from other data (fingerprint differs); retraining", folder)
        except ArtifactError as e:
            log.warning("%s; retraining", e)
    backbone, metrics = train_backbone(split, model, config, seed=seed, progress=progress)
    test = evaluate_backbone(backbone, split, "test")
    meta = {
        "dataset": ds.name,
        "fingerprint": ds.fingerprint,
        "config": metrics["config"],
        "seed": seed,
        "best_epoch": metrics["best_epoch"],
        "validation": metrics["validation"],
        "test": test["metrics"],
        "test_users": test["users"],
        "train_seconds": metrics["train_seconds"],
        **{k: metrics[k] for k in ("epochs_run", "epoch_cap", "stopped_by", "best_is_last", "warnings") if k in metrics},
    }
    meta["recency"] = recency_choice(backbone, split)
    save_backbone(backbone, folder, meta, item_ids=ds.item_ids, user_ids=ds.user_ids)
    return load_backbone(folder)


def recency_choice(backbone: Backbone, split: Split) -> dict:
    """Whether (and how) the served candidates are re-ordered by recency, chosen on validation."""
    co_likes = CoLikes.from_likes(*split.train_interactions(), split.dataset.n_items)
    choice = choose_recency(CandidateGenerator.from_backbone(backbone, "exact"), split, co_likes)
    log.info("recency re-ordering for %s: %s", getattr(backbone, "name", "backbone"), choice.describe())
    return choice.to_dict()
