"""The heavy, read-only things a service process loads once: dataset + split, backbone +
FAISS index, engine + adapter, ranker. Loaded by the composition root (``stack.build``),
the same loader the CLI uses; several apps may share one Resources (tests build many apps
over one model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from candidate_gen.base import Backbone
from candidate_gen.data import Dataset
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import Split
from ranker.engines.base import Engine
from ranker.ranker import Ranker
from service.pipeline import ServedModel
from stack.settings import Settings


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
    from stack.build import StackError, build_stack

    try:
        built = build_stack(settings)  # trains and saves the backbone when absent
    except StackError as e:
        raise StartupError(str(e)) from None
    limit = built.ranker.max_candidates
    if limit is not None and settings.num_candidates > limit:
        raise StartupError(f"RECRANKER_NUM_CANDIDATES={settings.num_candidates}: the adapter {built.adapter.name} "
                           f"ranks at most {limit} candidates per request (its catalogue prompt layout); set "
                           f"RECRANKER_NUM_CANDIDATES to {limit} or fewer")
    adapter = built.adapter
    served = ServedModel(model=built.engine.model_name, adapter=adapter.name if adapter else None,
                         adapter_revision=adapter.revision if adapter else None,
                         backbone=settings.backbone, data_fingerprint=built.dataset.fingerprint,
                         candidate_order=json.dumps(built.generator.info, sort_keys=True))
    return Resources(built.dataset, built.split, built.backbone.backbone, built.generator, built.engine,
                     built.ranker, served)
