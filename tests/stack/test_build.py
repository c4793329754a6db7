"""The composition root turns Settings into an engine: dtype and device reach the model."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import torch

from stack.settings import Settings
from ranker.engines.hf import auto_dtype, bf16_units, cpu_flags
from stack.build import build_engine


@pytest.mark.slow
def test_dtype_setting_reaches_the_engine(model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECRANKER_DTYPE", "bfloat16")
    engine = build_engine(Settings(base_model=str(model_dir), adapter="none", device="cpu"))
    assert engine.dtype == torch.bfloat16
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    auto = build_engine(Settings(base_model=str(model_dir), adapter="none", device="cpu", dtype="auto"))
    assert auto.dtype == auto_dtype("cpu", cpu_flags())  # chosen by this machine's CPU


def test_auto_dtype_follows_the_hardware() -> None:
    assert auto_dtype("cuda", frozenset()) == torch.bfloat16
    assert auto_dtype("cpu", frozenset({"avx2", "amx_bf16", "amx_tile"})) == torch.bfloat16
    assert auto_dtype("cpu", frozenset({"avx512f", "avx512_bf16"})) == torch.bfloat16
    assert auto_dtype("cpu", frozenset({"avx2", "avx512f"})) == torch.float32  # bf16 would be emulated: slower
    assert auto_dtype("cpu", frozenset()) == torch.float32
    assert bf16_units(frozenset({"avx512_bf16", "amx_bf16"})) == "amx_bf16"
    assert bf16_units(frozenset({"avx512f", "avx512_bf16"})) == "avx512_bf16"
    assert bf16_units(frozenset({"avx2"})) is None


def test_unknown_dtype_is_rejected_with_the_field_named(monkeypatch) -> None:
    monkeypatch.setenv("RECRANKER_DTYPE", "int3")
    with pytest.raises(pydantic.ValidationError, match="dtype"):
        Settings()


@pytest.mark.slow
def test_the_ranker_serves_the_shipped_weights_only_over_the_backbone_they_were_chosen_for(model_dir: Path) -> None:
    from stack.build import build_ranker
    from stack.settings import DEFAULT_ADAPTER
    from ranker.adapter import load_adapter

    settings = Settings(base_model=str(model_dir), device="cpu")
    adapter = load_adapter(DEFAULT_ADAPTER)
    chosen_for = {ev["backbone_model"] for ev in adapter.weight_set.evidence.values()}
    assert chosen_for == {"lightgcn+recency"}  # LightGCN's candidates as served: re-ordered by recency
    over_lightgcn = build_ranker(settings, adapter, "lightgcn+recency").weight_set
    assert over_lightgcn.for_hints(True) == adapter.weight_set.hints_on and not over_lightgcn.withheld
    for other in ("sasrec", "lightgcn"):
        over_other = build_ranker(settings, adapter, other).weight_set
        assert over_other.llm_used() == {"hints_on": False, "hints_off": False} and set(over_other.withheld) == {
            "hints_on", "hints_off"}

    # weights chosen under one pairwise budget are not served by a ranker configured with another
    from dataclasses import replace

    from ranker.ensemble import EnsembleWeights, WeightSet

    mix = WeightSet(hints_on=EnsembleWeights(0, 0.75, 0.25, 0), chosen=True, llm_helps={"hints_on": True},
                    evidence={"hints_on": {"backbone_model": "lightgcn", "pairwise_budget": 5}})
    chosen_with_5 = replace(adapter, weight_set=mix)
    assert build_ranker(settings, chosen_with_5, "lightgcn").weight_set.modes_used(True) == ("pairwise", "listwise")
    at_9 = build_ranker(Settings(base_model=str(model_dir), device="cpu", pairwise_budget=9), chosen_with_5, "lightgcn")
    assert at_9.config.pairwise_budget == 9 and at_9.weight_set.modes_used(True) == ()
    assert "pairwise_budget 5, this ranker runs pairwise_budget 9" in at_9.weight_set.withheld["hints_on"]


def test_start_up_warnings_name_weights_chosen_over_another_backbone_or_with_other_numerics():
    from ranker.ensemble import EnsembleWeights, WeightSet
    from stack.build import weights_chosen_elsewhere, weights_scored_with_other_numerics

    amx = {"device": "cpu", "dtype": "bfloat16", "bf16_units": "amx_bf16"}
    ws = WeightSet(hints_on=EnsembleWeights(1, 0, 0, 0.3), chosen=True,
                   evidence={"hints_on": {"backbone_model": "lightgcn", "scored_on": amx}})
    assert weights_chosen_elsewhere(ws, "lightgcn") == [] and weights_scored_with_other_numerics(ws, amx) == []
    [line] = weights_chosen_elsewhere(ws, "sasrec")
    assert line.startswith("hints_on: the hybrid weights chosen over lightgcn candidates") and \
        "recranker weights --backbone sasrec" in line
    # recency re-ordering is part of the candidate source: plain LightGCN weights are not served over it
    [line] = weights_chosen_elsewhere(ws, "lightgcn+recency")
    assert "chosen over lightgcn candidates" in line and "recranker weights --backbone lightgcn`" in line
    budget9 = WeightSet(hints_on=EnsembleWeights(0, 1, 0, 0), chosen=True,
                        evidence={"hints_on": {"backbone_model": "lightgcn", "pairwise_budget": 9}})
    assert weights_chosen_elsewhere(budget9, "lightgcn", {"pairwise_budget": 9}) == []
    [line] = weights_chosen_elsewhere(budget9, "lightgcn", {"pairwise_budget": 5})
    assert "weights chosen with pairwise_budget 9, this ranker runs pairwise_budget 5" in line and \
        "answers in the backbone's order" in line
    [line] = weights_scored_with_other_numerics(ws, {"device": "cpu", "dtype": "float32", "bf16_units": None})
    assert "computed as bfloat16 on cpu (amx_bf16), this engine computes float32 on cpu" in line and \
        "recranker weights" in line
