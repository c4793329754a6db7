"""Composition root: builds the ranker stack (engine + adapter + weights + config) from
Settings, for every entry point (the service, the CLI's evaluation and training)."""

from __future__ import annotations

from pathlib import Path

from recranker.settings import Settings


class StackError(RuntimeError):
    """A resource is missing or inconsistent; the message says which and what to do."""


def ranker_config(settings: Settings, **overrides):
    from ranker.ranker import RankerConfig

    base = dict(pairwise_budget=settings.pairwise_budget, listwise_shuffles=settings.listwise_shuffles,
                history_token_budget=settings.history_token_budget, use_hints=settings.use_hints)
    return RankerConfig(**(base | overrides))


def build_engine(settings: Settings, adapter: str | None = None):
    """The engine for ``settings.engine``; ``adapter`` (a folder or None) defaults to settings.adapter."""
    from ranker.engines.factory import create_engine
    from ranker.model import prepare_model

    if adapter is not None and not Path(adapter).is_dir():
        raise StackError(f"adapter folder {adapter} does not exist; train one, point RECRANKER_ADAPTER "
                         "at it, or set RECRANKER_ADAPTER=none to serve the base model")
    if settings.engine == "hf":
        model_path = prepare_model(settings.base_model, settings.models_dir)
        return create_engine("hf", model_path=model_path, adapter_path=adapter, device=settings.device,
                             dtype=None if settings.dtype == "auto" else settings.dtype)
    # vLLM scores token ids made by our own tokenizer, so training, HF and vLLM agree exactly
    tokenizer_path = prepare_model(settings.base_model, settings.models_dir)
    return create_engine("vllm", base_url=settings.vllm_url, model=settings.vllm_model or settings.base_model,
                         tokenizer_path=tokenizer_path)


def build_ranker(settings: Settings, adapter: str | None, **config_overrides):
    from ranker.ensemble import load_weights
    from ranker.ranker import Ranker

    engine = build_engine(settings, adapter)
    weights = load_weights(Path(adapter) if adapter else None)
    return Ranker(engine, ranker_config(settings, **config_overrides), weights)
