"""The one mode registry: per mode its label set and its plan / collect pair.

Serving (``Ranker.plans`` and the per-mode engine call), training (the instruction
builders in ``training.instructions`` are keyed by and checked against it) and evaluation
(its rows) all read this table, so adding a mode is one entry here plus its module.
See docs/method.md §7.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranker.modes import listwise, pairwise, pointwise
from ranker.modes.base import ModePlan
from ranker.prompts import LISTWISE_LABELS, PAIRWISE_LABELS, POINTWISE_LABELS
from ranker.types import MODES, Mode, ModeScores


@dataclass(frozen=True)
class ModeSpec:
    name: Mode
    labels: tuple[str, ...]  # the tokens whose probabilities the engine reads
    plan: Callable[..., ModePlan]  # plan(user, candidates, *, hints, config, count_tokens, **options(cfg))
    collect: Callable[[ModePlan, np.ndarray], ModeScores]
    options: Callable[[Any], dict]  # the mode's own knobs, read from a RankerConfig


MODE_REGISTRY: Mapping[Mode, ModeSpec] = {
    "pointwise": ModeSpec("pointwise", POINTWISE_LABELS, pointwise.plan, pointwise.collect, lambda cfg: {}),
    "pairwise": ModeSpec("pairwise", PAIRWISE_LABELS, pairwise.plan, pairwise.collect,
                         lambda cfg: {"budget": cfg.pairwise_budget, "seed": cfg.seed}),
    "listwise": ModeSpec("listwise", LISTWISE_LABELS, listwise.plan, listwise.collect,
                         lambda cfg: {"shuffles": cfg.listwise_shuffles, "seed": cfg.seed}),
}
if tuple(MODE_REGISTRY) != MODES:
    raise ImportError(f"MODE_REGISTRY {tuple(MODE_REGISTRY)} must list ranker.types.MODES {MODES} in order")

LABEL_SETS: Mapping[Mode, tuple[str, ...]] = {m: spec.labels for m, spec in MODE_REGISTRY.items()}

# One engine call reads every mode's labels (ranker.ranker): the sets are disjoint, so a
# column identifies its mode, and each mode keeps its own slice of the columns.
ALL_LABELS: tuple[str, ...] = tuple(label for labels in LABEL_SETS.values() for label in labels)
if len(set(ALL_LABELS)) != len(ALL_LABELS):
    raise ImportError(f"the label sets of the modes must be disjoint, got {ALL_LABELS}")


def _label_columns(label_sets: Mapping[Mode, tuple[str, ...]]) -> dict[Mode, slice]:
    ends = np.cumsum([len(labels) for labels in label_sets.values()])
    return {mode: slice(int(end) - len(labels), int(end)) for (mode, labels), end in zip(label_sets.items(), ends)}


LABEL_COLUMNS: Mapping[Mode, slice] = _label_columns(LABEL_SETS)
