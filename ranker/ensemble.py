"""Hybrid ranking (docs/method.md §8): per-request normalised mode scores, weighted, plus a
backbone prior.

    hybrid(i) = sum over modes m that ran of w_m * z_m(i)  +  w_backbone * z_backbone(i)

z is a z-score over the request's candidates: (s - mean) / std. It is chosen over
min-max because one outlier (say a single confident pairwise win) squeezes every other
candidate together under min-max, while a z-score keeps their spread. Constant scores
(std 0, e.g. one candidate) normalise to 0, and so does a candidate a mode did not score
or one without a backbone score: 0 is the request's average, a neutral prior.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ranker.types import MODES

log = logging.getLogger(__name__)

WEIGHTS_FILE = "hybrid_weights.json"


@dataclass(frozen=True)
class EnsembleWeights:
    """Weights of the three modes (the paper: 1/3 each) and of the backbone prior.

    The backbone prior defaults to 0.3, i.e. about a quarter of the total weight: the
    candidates are the backbone's top-N and its order is already a strong ranker, while
    a small LLM's scores are noisy; 0.3 breaks near-ties in the backbone's favour without
    letting it overrule all three modes agreeing. Training tunes all four on validation
    users and writes them to hybrid_weights.json beside the adapter.
    """

    pointwise: float = 1 / 3
    pairwise: float = 1 / 3
    listwise: float = 1 / 3
    backbone: float = 0.3

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"ensemble weight {f.name!r} must be a finite number >= 0, got {v!r}")

    def of(self, mode: str) -> float:
        return getattr(self, mode)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def load_weights(adapter_dir: Path | None) -> EnsembleWeights:
    """Weights from ``adapter_dir/hybrid_weights.json`` when present, defaults otherwise.

    The file is {"pointwise": .., "pairwise": .., "listwise": .., "backbone": ..}; a key left
    out keeps its default, an unknown key or a bad value is an error naming the file.
    """
    if adapter_dir is None:
        return EnsembleWeights()
    path = Path(adapter_dir) / WEIGHTS_FILE
    if not path.is_file():
        log.info("no %s in %s: default ensemble weights", WEIGHTS_FILE, adapter_dir)
        return EnsembleWeights()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of weights, got {type(data).__name__}")
    known = {f.name for f in fields(EnsembleWeights)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    try:
        weights = EnsembleWeights(**data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    log.info("ensemble weights from %s: %s", path, weights)
    return weights


def zscore(scores: Mapping[str, float], item_ids: Sequence[str]) -> dict[str, float]:
    """Z-scores over the items that have a score; items without one (or constant scores) get 0."""
    known = [float(scores[i]) for i in item_ids if i in scores and scores[i] is not None]
    if not known:
        return dict.fromkeys(item_ids, 0.0)
    mean = sum(known) / len(known)
    std = math.sqrt(sum((s - mean) ** 2 for s in known) / len(known))
    if std <= 1e-12 * max(1.0, abs(mean)):
        return dict.fromkeys(item_ids, 0.0)
    return {i: (float(scores[i]) - mean) / std if scores.get(i) is not None else 0.0 for i in item_ids}


def hybrid_scores(
    item_ids: Sequence[str],
    mode_scores: Mapping[str, Mapping[str, float]],
    backbone: Mapping[str, float | None],
    weights: EnsembleWeights,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(hybrid score per item, normalised score per mode per item) for one request.

    ``mode_scores`` holds only the modes that ran (an empty mapping for a mode is skipped).
    """
    bad = [m for m in mode_scores if m not in MODES]
    if bad:
        raise ValueError(f"unknown mode(s) {bad}; expected some of {list(MODES)}")
    normalised = {m: zscore(s, item_ids) for m, s in mode_scores.items() if s}
    return combine(item_ids, normalised, backbone, weights), normalised


def combine(
    item_ids: Sequence[str],
    normalised: Mapping[str, Mapping[str, float]],
    backbone: Mapping[str, float | None],
    weights: EnsembleWeights,
) -> dict[str, float]:
    """The weighted sum of already normalised mode scores plus the backbone prior.

    ``hybrid_scores`` calls it after normalising; offline evaluation calls it directly on
    the normalised scores it stored, to try many weights without re-ranking.
    """
    prior = zscore({i: s for i, s in backbone.items() if s is not None}, item_ids)
    return {
        i: sum(weights.of(m) * z[i] for m, z in normalised.items()) + weights.backbone * prior[i] for i in item_ids
    }


def order_by(scores: Mapping[str, float], item_ids: Sequence[str], backbone: Mapping[str, float | None]) -> list[str]:
    """Items by score, best first; ties go to the higher backbone score, then to input order."""
    pos = {item: k for k, item in enumerate(item_ids)}

    def key(item: str) -> tuple[float, bool, float, int]:
        b = backbone.get(item)
        return (-scores[item], b is None, -(b or 0.0), pos[item])

    return sorted(item_ids, key=key)
