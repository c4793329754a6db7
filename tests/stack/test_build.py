"""The composition root turns Settings into an engine: dtype and device reach the model."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import torch

from stack.settings import Settings
from stack.build import build_engine


@pytest.mark.slow
def test_dtype_setting_reaches_the_engine(model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECRANKER_DTYPE", "bfloat16")
    engine = build_engine(Settings(base_model=str(model_dir), adapter="none", device="cpu"))
    assert engine.dtype == torch.bfloat16
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    auto = build_engine(Settings(base_model=str(model_dir), adapter="none", device="cpu", dtype="auto"))
    assert auto.dtype == torch.float32  # auto on a CPU


def test_unknown_dtype_is_rejected_with_the_field_named(monkeypatch) -> None:
    monkeypatch.setenv("RECRANKER_DTYPE", "int3")
    with pytest.raises(pydantic.ValidationError, match="dtype"):
        Settings()
