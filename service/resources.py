"""The heavy, read-only things a service process loads once: dataset + split, backbone +
FAISS index, engine + adapter, ranker. Built from Settings (the ranker through the shared
composition root, recranker.stack); several apps may share one Resources (tests build many
apps over one model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from candidate_gen.base import Backbone
from candidate_gen.data import Dataset
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import Split
from ranker.engines.base import Engine
from ranker.ranker import Ranker
from recranker.settings import Settings
from service.pipeline import ServedModel

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A resource the service needs is missing or inconsistent; the message says which."""


@dataclass
class Resources:
    dataset: Dataset
    split: Split
    backbone: Backbone
    generator: CandidateGenerator
    engine: Engine
    ranker: Ranker
    served: ServedModel


def load_resources(settings: Settings) -> Resources:
    from candidate_gen.artifacts import ensure_backbone
    from candidate_gen.download import load_dataset
    from candidate_gen.split import leave_one_out
    from recranker.stack import build_ranker

    t = time.perf_counter()
    dataset = load_dataset(settings.dataset, settings.resolved_data_dir, url=settings.ml100k_url)
    split = leave_one_out(dataset)
    loaded = ensure_backbone(settings.home, split, settings.backbone)  # trains and saves when absent
    if list(loaded.item_ids) != list(dataset.item_ids):
        raise StartupError(f"backbone {settings.backbone} was trained on another item catalog than "
                           f"{dataset.name}: retrain it (recranker backbone train --model {settings.backbone})")
    generator = CandidateGenerator.from_backbone(loaded.backbone, "exact")
    log.info("dataset %s + %s backbone + index ready in %.1fs", dataset.name, settings.backbone, time.perf_counter() - t)
    t = time.perf_counter()
    ranker = build_ranker(settings, settings.adapter)  # engine + adapter + its tuned hybrid weights
    engine = ranker.engine
    log.info("engine %s (adapter %s) ready in %.1fs", engine.model_name, engine.adapter_name, time.perf_counter() - t)
    served = ServedModel(model=engine.model_name, adapter=engine.adapter_name,
                         adapter_revision=getattr(engine, "adapter_revision", None),
                         backbone=settings.backbone, data_fingerprint=dataset.fingerprint)
    return Resources(dataset, split, loaded.backbone, generator, engine, ranker, served)
