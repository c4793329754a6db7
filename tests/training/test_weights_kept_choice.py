"""`recranker weights` keeps the other hint setting's weights only when they were chosen
for this adapter, backbone and scoring settings; it says why not before any scoring."""

from __future__ import annotations

import shutil
from pathlib import Path

from ranker.adapter import load_adapter
from ranker.ensemble import load_weight_set
from stack.settings import DEFAULT_ADAPTER, Settings, ranker_config
from training.pipeline import _choice_context, _kept_choice_problem


def _problem(adapter, backbone: str, config, key: str) -> str | None:
    return _kept_choice_problem(load_weight_set(adapter.path), key, _choice_context(adapter, backbone, config))


def test_the_shipped_choice_is_kept_only_for_its_own_backbone_and_settings(tmp_path: Path) -> None:
    adapter = load_adapter(shutil.copytree(DEFAULT_ADAPTER, tmp_path / "adapter"))
    served = ranker_config(Settings())
    assert _problem(adapter, "lightgcn+recency", served, "hints_on") is None  # chosen for exactly this
    assert _problem(adapter, "sasrec", served, "hints_on") == \
        "were chosen for backbone lightgcn+recency, not sasrec"
    other = ranker_config(Settings(), pairwise_budget=9)
    assert _problem(adapter, "lightgcn+recency", other, "hints_off") == "were chosen for pairwise budget 5, not 9"


def test_an_adapter_without_chosen_weights_has_none_to_keep(tmp_path: Path) -> None:
    folder = shutil.copytree(DEFAULT_ADAPTER, tmp_path / "fresh")
    (folder / "hybrid_weights.json").unlink()
    (folder / "hybrid_weights_selection.json").unlink()
    adapter = load_adapter(folder)
    assert _problem(adapter, "lightgcn", ranker_config(Settings()), "hints_on") == "were never chosen"
