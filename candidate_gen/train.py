"""Train a backbone on the training likes of a split, selecting the epoch on validation.

One loop for every learned model: each model module supplies a config dataclass, a
``torch.nn.Module`` with ``loss(batch)`` and ``export(...) -> Backbone``, and a sampler that
yields batches for one epoch. Every ``eval_every`` epochs the exported backbone is ranked
on the validation users (NDCG@10); the best state is kept and training stops after
``patience`` rounds without improvement. The epoch cap is generous (1000) so that patience,
not the cap, ends training; if the best epoch is nevertheless the last one (still improving
at the cap) a warning is logged and recorded in the metrics (``warnings``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from candidate_gen.base import BACKBONE_NAMES, Backbone
from candidate_gen.evaluate import evaluate_backbone
from candidate_gen.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency
from candidate_gen.mf import MF, BPRSampler, MFConfig, known_users
from candidate_gen.pop import PopBackbone, PopConfig
from candidate_gen.sasrec import SASRec, SASRecConfig, SequenceSampler
from candidate_gen.split import Split

log = logging.getLogger(__name__)

SELECT_METRIC = "NDCG@10"


@dataclass(frozen=True)
class Trainer:
    """How one backbone kind is trained: its config dataclass and its own ``fit``.

    ``fit(cfg, split, rng, progress) -> (backbone, validation metrics, best epoch, epochs run)``.
    """

    config: type
    fit: Callable[..., tuple[Backbone, dict, int, int]]


def _fit_pop(cfg: PopConfig, split: Split, rng, progress: bool):
    _, items = split.train_interactions()
    best = PopBackbone.fit(items, split.dataset.n_items)
    return best, evaluate_backbone(best, split, "valid")["metrics"], 0, 0


def _fit_bpr(make_net: Callable[..., nn.Module], name: str):
    """fit for the BPR-trained user/item embedding models (MF, LightGCN)."""

    def fit(cfg, split: Split, rng, progress: bool):
        users, items = split.train_interactions()
        n_users, n_items = split.dataset.n_users, split.dataset.n_items
        known = known_users(users, n_users)
        sampler = BPRSampler(users, items, n_items, cfg.batch_size)
        net = make_net(users, items, n_users, n_items, cfg)
        # BPR models put L2 on the batch in the loss, so no optimizer weight decay
        return _fit(net, sampler, lambda: net.export(known), cfg, split, rng, progress, name, decay=0.0)

    return fit


def _fit_sasrec(cfg: SASRecConfig, split: Split, rng, progress: bool):
    histories = [s.train_likes for s in split.users.values()]
    net = SASRec(split.dataset.n_items, cfg)
    sampler = SequenceSampler(histories, cfg.max_len, cfg.batch_size)
    return _fit(net, sampler, net.export, cfg, split, rng, progress, "sasrec", decay=cfg.l2)


TRAINERS: dict[str, Trainer] = {
    "pop": Trainer(PopConfig, _fit_pop),
    "mf": Trainer(MFConfig, _fit_bpr(lambda u, i, nu, ni, cfg: MF(nu, ni, cfg), "mf")),
    "lightgcn": Trainer(LightGCNConfig, _fit_bpr(
        lambda u, i, nu, ni, cfg: LightGCN(nu, ni, normalized_adjacency(u, i, nu, ni), cfg), "lightgcn")),
    "sasrec": Trainer(SASRecConfig, _fit_sasrec),
}
if tuple(TRAINERS) != BACKBONE_NAMES:
    raise ImportError(f"TRAINERS {tuple(TRAINERS)} must list candidate_gen.base.BACKBONE_NAMES {BACKBONE_NAMES}")
CONFIGS: dict[str, type] = {name: t.config for name, t in TRAINERS.items()}
MODELS = BACKBONE_NAMES


def make_config(model: str, config: dict | None = None):
    """The model's config dataclass with ``config`` overriding defaults; unknown keys are an error."""
    if model not in TRAINERS:
        raise ValueError(f"unknown backbone {model!r}; choose one of {', '.join(MODELS)}")
    cls = CONFIGS[model]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config or {}) - known)
    if unknown:
        raise ValueError(f"unknown {model} config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known)) or 'none'}")
    return cls(**(config or {}))


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None leaves it alone)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_backbone(
    split: Split,
    model: str,
    config: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
) -> tuple[Backbone, dict]:
    """Train ``model`` ('pop', 'mf', 'lightgcn', 'sasrec') on ``split.train_interactions()``.

    Returns the backbone at its best validation epoch and a metrics dict with ``best_epoch``,
    ``epochs_run``, ``validation`` (HR/NDCG@3,5,10), ``train_seconds``, ``config``, ``seed``.
    ``threads``: torch threads while training. One is the default because these models'
    ops are tiny: on a shared 2-core machine two threads ran an MF epoch 40x slower.
    """
    with torch_threads(threads):
        return _train(split, model, config, seed, progress)


def _train(split: Split, model: str, config: dict | None, seed: int, progress: bool) -> tuple[Backbone, dict]:
    cfg = make_config(model, config)
    users, _ = split.train_interactions()
    if len(users) == 0:
        raise ValueError(f"split of {split.dataset.name!r} has no training likes to learn from")
    if not split.eval_users("valid"):
        raise ValueError(f"split of {split.dataset.name!r} has no validation users (none has two or more likes)")
    rng = seed_everything(seed)
    t0 = time.perf_counter()
    best, validation, best_epoch, epochs_run = TRAINERS[model].fit(cfg, split, rng, progress)
    seconds = time.perf_counter() - t0
    cap = getattr(cfg, "epochs", None)
    stopped = "no epochs" if cap is None else ("cap" if epochs_run >= cap else "patience")
    best_is_last = bool(cap is not None and epochs_run > 0 and best_epoch == epochs_run)
    warnings = []
    if best_is_last:
        warnings.append(f"{model}: the best validation epoch is the last one ({best_epoch} of a {cap}-epoch cap): "
                        f"still improving when training stopped; raise the cap (config epochs)")
        log.warning(warnings[-1])
    metrics = {
        "model": model,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "epoch_cap": cap,
        "stopped_by": stopped,
        "best_is_last": best_is_last,
        "warnings": warnings,
        "validation": validation,
        "train_seconds": seconds,
        "config": dataclasses.asdict(cfg),
        "seed": seed,
    }
    log.info("%s trained in %.1fs, best epoch %d, valid %s %.4f",
             model, seconds, best_epoch, SELECT_METRIC, validation[SELECT_METRIC])
    return best, metrics


def _fit(net, sampler, export: Callable[[], Backbone], cfg, split: Split, rng, progress: bool, model: str,
         decay: float):
    """The epoch loop with validation-based model selection and early stopping."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=decay)
    best_score, best_state, best_valid, best_epoch, stale = -1.0, None, {}, 0, 0
    # disable=None: a bar on a terminal only; a log or pipe gets the start and end lines instead
    log.info("training %s backbone (up to %d epochs)", model, cfg.epochs)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {model}", disable=None if progress else True, leave=False)
    epoch = 0
    for epoch in bar:
        loss = _train_epoch(net, sampler, opt, rng)
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            bar.set_postfix(loss=f"{loss:.4f}")
            continue
        valid = _validate(net, export, split)
        bar.set_postfix(loss=f"{loss:.4f}", ndcg10=f"{valid[SELECT_METRIC]:.4f}", best=best_epoch)
        if valid[SELECT_METRIC] > best_score:
            best_score, best_valid, best_epoch, stale = valid[SELECT_METRIC], valid, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("%s: early stop at epoch %d (best %d)", model, epoch, best_epoch)
                break
    bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return export(), best_valid, best_epoch, epoch


def _train_epoch(net, sampler, opt, rng: np.random.Generator) -> float:
    net.train()
    total, steps = 0.0, 0
    for batch in sampler.epoch(rng):
        loss = net.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


def _validate(net, export: Callable[[], Backbone], split: Split) -> dict[str, float]:
    net.eval()
    return evaluate_backbone(export(), split, "valid")["metrics"]
