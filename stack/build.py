"""The composition root: the one loader every entry point uses.

``build_stack(settings, ...)`` loads the dataset and its split, the backbone (trained and
saved when absent) with its FAISS candidate generator, resolves the adapter once
(``ranker.adapter.Adapter``: path, name, revision, hybrid weights), and builds the engine
the settings choose (HF or vLLM, both given that adapter) and the ranker. The service
(``service.resources``) and the CLI's evaluation and training commands call it; pieces
(``load_split``, ``resolve_adapter``, ``build_engine``, ``build_ranker``) are public for
commands that need only part of the stack.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ranker.adapter import Adapter
from ranker.ranker import Ranker, RankerConfig
from stack.settings import Settings, adapter_or_none, ranker_config

if TYPE_CHECKING:  # torch and faiss load only when a stack is built
    from candidate_gen.artifacts import LoadedBackbone
    from candidate_gen.data import Dataset
    from candidate_gen.retrieve import CandidateGenerator
    from candidate_gen.split import Split
    from ranker.engines.base import Engine

log = logging.getLogger(__name__)

_FROM_SETTINGS = object()  # "use settings.adapter": distinct from None, which means no adapter


class StackError(RuntimeError):
    """A resource is missing or inconsistent; the message says which and what to do."""


@dataclass
class Stack:
    """Everything a ranking process holds: data, candidates, and the LLM ranker."""

    dataset: Dataset
    split: Split
    backbone: LoadedBackbone
    generator: CandidateGenerator
    adapter: Adapter | None
    engine: Engine
    ranker: Ranker


def load_split(settings: Settings, dataset: str | None = None, dataset_path: str | None = None) -> Split:
    """The leave-one-out split of a dataset: a folder path, a name, or settings.dataset."""
    from candidate_gen.download import load_dataset
    from candidate_gen.split import leave_one_out

    name = dataset_path or dataset or settings.dataset
    return leave_one_out(load_dataset(name, settings.resolved_data_dir, url=settings.ml100k_url))


def load_backbone(settings: Settings, split: Split, name: str | None = None, seed: int = 0) -> LoadedBackbone:
    """The saved backbone for this split (trained and saved when absent), checked against its catalog."""
    from candidate_gen.artifacts import ensure_backbone

    name = name or settings.backbone
    loaded = ensure_backbone(settings.home, split, name, seed=seed)
    if list(loaded.item_ids) != list(split.dataset.item_ids):
        raise StackError(f"backbone {name} was trained on another item catalog than {split.dataset.name}: "
                         f"retrain it (recranker backbone train --model {name})")
    return loaded


def resolve_adapter(settings: Settings, adapter: str | None | object = _FROM_SETTINGS) -> Adapter | None:
    """The one place an adapter setting becomes an Adapter. ``adapter``: a folder, 'none',
    or left out for settings.adapter (RECRANKER_ADAPTER)."""
    from ranker.adapter import AdapterError, load_adapter

    folder = settings.adapter if adapter is _FROM_SETTINGS else adapter_or_none(adapter)
    if folder is None:
        return None
    try:
        return load_adapter(folder)
    except AdapterError as e:
        raise StackError(str(e)) from None


def build_engine(settings: Settings, adapter: Adapter | None = None) -> Engine:
    """The engine for ``settings.engine``, serving ``adapter`` (None: the base model)."""
    from ranker.engines.factory import create_engine
    from ranker.model import prepare_model

    # vLLM scores token ids made by our own tokenizer, so training, HF and vLLM agree exactly
    model_path = prepare_model(settings.base_model, settings.models_dir)
    if settings.engine == "hf":
        return create_engine("hf", model_path=model_path, adapter=adapter, device=settings.device,
                             dtype=None if settings.dtype == "auto" else settings.dtype,
                             prefix_cache_bytes=settings.prefix_cache_mb << 20)
    return create_engine("vllm", base_url=settings.vllm_url, model=settings.vllm_model or settings.base_model,
                         tokenizer_path=model_path, adapter=adapter)


def build_ranker(settings: Settings, adapter: Adapter | None, backbone: str | None = None,
                 **config_overrides) -> Ranker:
    """Engine + the adapter's tuned hybrid weights, one set per hint setting (defaults without
    one) + the settings' config, in the prompt layout the adapter was tuned on (genres or not).
    Over ``backbone``'s candidates, weights chosen over another backbone's, or with other
    scoring settings (pairwise budget, listwise orders, history tokens), serve the backbone
    alone (``WeightSet.served_over``)."""
    from ranker.ensemble import WeightSet

    engine = build_engine(settings, adapter)
    config = served_ranker_config(settings, adapter, **config_overrides)
    weights = adapter.weight_set if adapter is not None else WeightSet()
    if backbone is not None:
        weights = weights.served_over(backbone, asdict(config))
    log.info("hybrid weights: %s", weights.describe())
    return Ranker(engine, config, weights)


def served_ranker_config(settings: Settings, adapter: Adapter | None, **overrides) -> RankerConfig:
    """The settings' ranker config in the prompt layout ``adapter`` was tuned on: an adapter
    tuned with genres after titles (or on the catalogue layout) must see them when served,
    one tuned without must not."""
    layout = {"item_genres": adapter.item_genres, "prompt_layout": adapter.prompt_layout} if adapter is not None else {}
    return ranker_config(settings, **(layout | overrides))


def weights_chosen_elsewhere(weight_set, source: str, ranker_config: dict | None = None) -> list[str]:
    """One line per hint setting whose hybrid weights were chosen over another candidate
    source's candidates (backbone, recency re-ordering: ``CandidateGenerator.source``) or with
    other scoring settings than ``ranker_config``'s (their scale and trust in the backbone
    prior were fitted to those)."""
    backbone = source.split("+", 1)[0]  # the CLI names the backbone; the settings add recency
    return [f"{setting}: the hybrid {reason}; {setting} answers in the backbone's order; choose weights for it "
            f"with `recranker weights --backbone {backbone}` under these settings (in a copy of the adapter folder)"
            for setting, reason in weight_set.served_over(source, ranker_config).withheld.items()]


def weights_scored_with_other_numerics(weight_set, engine_info: dict) -> list[str]:
    """One line per hint setting whose served LLM weights were chosen with other numerics
    than this engine's (another dtype, device or CPU bf16 unit)."""
    return [f"{setting}: the hybrid {reason}; its validation verdict is not checked with these numerics: "
            f"re-check it with `recranker weights` on this machine (in a copy of the adapter folder)"
            for setting, reason in weight_set.scored_with_other_numerics(engine_info).items()]


def recency_rescorer(settings: Settings, split: Split, backbone_meta: dict):
    """The candidate stage's recency re-ordering: the settings' where they set it, else the
    backbone's own validation choice (its meta); None when off."""
    from candidate_gen.recency import CoLikes, RecencyConfig, RecencyRescorer

    chosen = backbone_meta.get("recency")
    if chosen is None and settings.recency_weight is None:
        log.info("backbone %s was trained before recency was chosen on validation: candidates in its order "
                 "(retrain it, or set RECRANKER_RECENCY_WEIGHT)", backbone_meta.get("model"))
    chosen = chosen or {}
    config = RecencyConfig(
        settings.recency_weight if settings.recency_weight is not None else float(chosen.get("weight", 0.0)),
        settings.recency_window if settings.recency_window is not None else int(chosen.get("window", 2)))
    if not config.active:
        return None
    return RecencyRescorer(CoLikes.from_likes(*split.train_interactions(), split.dataset.n_items), config)


def build_stack(settings: Settings, *, dataset: str | None = None, dataset_path: str | None = None,
                backbone: str | None = None, seed: int = 0,
                adapter: str | None | object = _FROM_SETTINGS) -> Stack:
    """Load everything (see the module docstring); arguments override the settings."""
    from candidate_gen.retrieve import CandidateGenerator

    t = time.perf_counter()
    split = load_split(settings, dataset, dataset_path)
    loaded = load_backbone(settings, split, backbone, seed)
    generator = CandidateGenerator.from_backbone(loaded.backbone, "exact",
                                                 recency=recency_rescorer(settings, split, loaded.meta))
    log.info("dataset %s + %s backbone + index ready in %.1fs%s", split.dataset.name, loaded.backbone.name,
             time.perf_counter() - t, f" (candidates re-ordered: {generator.info})" if generator.info else "")
    t = time.perf_counter()
    resolved = resolve_adapter(settings, adapter)
    ranker = build_ranker(settings, resolved, generator.source)
    log.info("engine %s (adapter %s) ready in %.1fs", ranker.engine.model_name, ranker.engine.adapter_name,
             time.perf_counter() - t)
    for warning in weights_chosen_elsewhere(ranker.weight_set, generator.source, asdict(ranker.config)) + \
            weights_scored_with_other_numerics(ranker.weight_set, getattr(ranker.engine, "info", {})):
        log.warning("%s", warning)
    return Stack(split.dataset, split, loaded, generator, resolved, ranker.engine, ranker)
