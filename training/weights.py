"""Choose the hybrid ensemble's weights on validation users (never on test users)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranker.ensemble import WEIGHTS_FILE, EnsembleWeights
from training.data_io import write_text_atomic
from training.evaluate import UserOutcome, row_ranks
from training.report import per_user_metrics

MODE_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
BACKBONE_STEPS = (0.0, 0.15, 0.3, 0.5, 1.0, 2.0)


def weight_grid() -> list[EnsembleWeights]:
    """Mode weights on a simplex grid (at least one mode on) times backbone-prior weights."""
    grid = []
    for p, q in itertools.product(MODE_STEPS, repeat=2):
        r = round(1.0 - p - q, 4)
        if r < -1e-9:
            continue
        for b in BACKBONE_STEPS:
            grid.append(EnsembleWeights(pointwise=p, pairwise=q, listwise=max(r, 0.0), backbone=b))
    return grid


def objective(outcomes: Sequence[UserOutcome], weights: EnsembleWeights, metric: str = "NDCG@3") -> float:
    ranks = row_ranks(outcomes, weights)["hybrid"]
    return float(per_user_metrics(ranks)[metric].mean())


def choose_weights(outcomes: Sequence[UserOutcome], metric: str = "NDCG@3") -> tuple[EnsembleWeights, list[dict]]:
    """Best weights by ``metric`` on these (validation) outcomes; ties keep the earlier, simpler grid point."""
    scored = [(objective(outcomes, w, metric), w) for w in weight_grid()]
    best_value = max(v for v, _ in scored)
    best = next(w for v, w in scored if np.isclose(v, best_value))
    table = sorted(({"weights": w.to_dict(), metric: v} for v, w in scored), key=lambda r: -r[metric])
    return best, table


def save_weights(weights: EnsembleWeights, adapter_dir: Path, details: dict) -> Path:
    """hybrid_weights.json (read by the ranker) and a selection record beside it."""
    adapter_dir = Path(adapter_dir)
    path = adapter_dir / WEIGHTS_FILE
    # atomic: the service reads this file at start-up and must never see half of it
    write_text_atomic(path, json.dumps(weights.to_dict(), indent=2) + "\n")
    write_text_atomic(adapter_dir / "hybrid_weights_selection.json", json.dumps(details, indent=2) + "\n")
    return path
