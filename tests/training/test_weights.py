"""Chosen weights are written where the service reads them, and nothing else is left there."""

from __future__ import annotations

import json
from pathlib import Path

from ranker.ensemble import EnsembleWeights, load_weights
from training.weights import save_weights


def test_saved_weights_load_back_and_no_temp_file_remains(tmp_path: Path) -> None:
    chosen = EnsembleWeights(pointwise=0.25, pairwise=0.5, listwise=0.25, backbone=0.15)
    path = save_weights(chosen, tmp_path, {"stage": "valid", "users": 3})
    assert path == tmp_path / "hybrid_weights.json"
    assert load_weights(tmp_path) == chosen
    assert json.loads((tmp_path / "hybrid_weights_selection.json").read_text()) == {"stage": "valid", "users": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hybrid_weights.json", "hybrid_weights_selection.json"]
