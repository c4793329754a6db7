"""Pick an engine by its kind: one explicit mapping, never by sniffing the model name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ranker.engines.base import Engine

EngineKind = Literal["hf", "vllm"]


def _hf(**kwargs) -> Engine:
    from ranker.engines.hf import HFEngine  # torch + model load only when asked for

    return HFEngine(**kwargs)


def _vllm(**kwargs) -> Engine:
    from ranker.engines.vllm import VLLMEngine

    return VLLMEngine(**kwargs)


ENGINES: dict[str, Callable[..., Engine]] = {"hf": _hf, "vllm": _vllm}


def create_engine(kind: EngineKind, **kwargs) -> Engine:
    """``create_engine("hf", model_path=..., adapter_path=..., device=...)`` or
    ``create_engine("vllm", base_url=..., model=..., tokenizer_path=..., timeout=...)``;
    kwargs go to the engine's constructor unchanged."""
    if kind not in ENGINES:
        raise ValueError(f"unknown engine kind {kind!r}: expected one of {sorted(ENGINES)}")
    return ENGINES[kind](**kwargs)
