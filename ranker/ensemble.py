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
from dataclasses import asdict, dataclass, field, fields, replace
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


MODE_NAMES = MODES  # the weight fields that cost LLM time
HINT_KEYS = {True: "hints_on", False: "hints_off"}
BACKBONE_ONLY = EnsembleWeights(pointwise=0.0, pairwise=0.0, listwise=0.0, backbone=1.0)


class HintWeightsMissing(ValueError):
    """Hints off was asked for, but the served weights were chosen with hints on only."""


@dataclass(frozen=True)
class WeightSet:
    """The served hybrid weights: one set per hint setting, and whether the LLM earns its cost.

    ``hints_off`` None with ``chosen`` True means the file holds weights chosen with hints on
    only (the old flat format): they are not used for hints-off requests, which get
    ``HintWeightsMissing`` instead. Without a file (``chosen`` False) the defaults serve both.
    ``llm_helps`` maps "hints_on"/"hints_off" to the validation verdict (absent: unknown);
    ``evidence`` holds the validation figures behind it.
    """

    hints_on: EnsembleWeights = EnsembleWeights()
    hints_off: EnsembleWeights | None = None
    chosen: bool = False
    llm_helps: dict[str, bool] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    withheld: dict[str, str] = field(default_factory=dict)  # hint key -> why its chosen weights are not served

    def for_hints(self, use_hints: bool) -> EnsembleWeights:
        if use_hints:
            return self.hints_on
        if self.hints_off is not None:
            return self.hints_off
        if not self.chosen:
            return self.hints_on  # the defaults were not chosen for either setting
        raise HintWeightsMissing(
            "the served hybrid weights were chosen with hints on and none exist for hints off: "
            "send use_hints=true, or your own weights, or choose hints-off weights "
            "(recranker weights --hints off)")

    def modes_used(self, use_hints: bool) -> tuple[str, ...]:
        """Modes with a weight > 0 for this hint setting (empty: the LLM is not used)."""
        try:
            w = self.for_hints(use_hints)
        except HintWeightsMissing:
            return ()
        return tuple(m for m in MODE_NAMES if w.of(m) > 0)

    def llm_used(self) -> dict[str, bool | None]:
        """Per hint setting: does serving it run the LLM? (None: that setting is refused.)"""
        out: dict[str, bool | None] = {}
        for hints, key in HINT_KEYS.items():
            try:
                self.for_hints(hints)
            except HintWeightsMissing:
                out[key] = None
            else:
                out[key] = bool(self.modes_used(hints))
        return out

    def describe(self) -> str:
        """One line for /readyz and logs: which modes run per hint setting, and why."""
        parts = []
        for hints, key in HINT_KEYS.items():
            used = self.llm_used()[key]
            if used is None:
                parts.append(f"{key}: refused (weights chosen with hints on only)")
                continue
            if key in self.withheld:
                parts.append(f"{key}: backbone only, no LLM ({self.withheld[key]})")
                continue
            modes = self.modes_used(hints)
            verdict = self.llm_helps.get(key)
            why = "" if verdict is None else (" (validation: LLM helps)" if verdict
                                                  else " (validation: LLM does not beat the backbone)")
            parts.append(f"{key}: " + (f"LLM modes {', '.join(modes)}" if modes else "backbone only, no LLM") + why)
        return "; ".join(parts)

    def served_over(self, backbone_model: str, ranker_config: Mapping[str, object] | None = None) -> WeightSet:
        """This set as served over ``backbone_model``'s candidates by a ranker with
        ``ranker_config`` (its ``SCORING_CONFIG_FIELDS``). A hint setting whose weights were
        chosen over another backbone's candidates, or with other scoring settings, serves the
        backbone alone: the mix's scale and its trust in the backbone prior were fitted to
        what was chosen on (a mix that passed the rule for one backbone lost to another on
        validation; a pairwise chain of 9 pairs scores on another scale than one of 5)."""
        now = {"backbone_model": backbone_model,
               **{k: v for k, v in (ranker_config or {}).items() if k in SCORING_CONFIG_FIELDS}}
        withheld = {key: _chosen_elsewhere_reason(chosen, now) for key in HINT_KEYS.values()
                    if (chosen := self.chosen_elsewhere(key, **now))}
        if not withheld:
            return self
        return replace(self,
                       hints_on=BACKBONE_ONLY if "hints_on" in withheld else self.hints_on,
                       hints_off=BACKBONE_ONLY if "hints_off" in withheld else self.hints_off,
                       withheld={**self.withheld, **withheld})

    def scored_with_other_numerics(self, numerics: Mapping[str, str | None]) -> dict[str, str]:
        """Per hint setting that runs the LLM: why its verdict was not reached with
        ``numerics`` (the engine's device, dtype and bf16 units), when the evidence recorded
        others. Not a reason to withhold the weights, but to re-check them: the same users
        scored with another CPU's bf16 kernels moved a validation verdict (docs/results.md)."""
        out: dict[str, str] = {}
        if numerics.get("dtype") is None:
            return out  # an engine that does not report its numerics (vLLM, test doubles)
        now = _numerics_class(numerics)
        for hints, key in HINT_KEYS.items():
            evidence = self.evidence.get(key)
            recorded = evidence.get("scored_on") if isinstance(evidence, dict) else None
            if not self.modes_used(hints) or not isinstance(recorded, dict) or recorded.get("dtype") is None:
                continue  # no LLM served, or chosen before the numerics were recorded
            then = _numerics_class(recorded)
            if then != now:
                out[key] = f"weights chosen on scores computed as {_describe_numerics(then)}, this engine computes " \
                           f"{_describe_numerics(now)}"
        return out

    def chosen_elsewhere(self, key: str, **now) -> dict:
        """For hint setting ``key``: the recorded choice contexts (evidence fields such as
        ``adapter_revision``, ``backbone_model``) that differ from ``now``, with the recorded
        value. A context not recorded (files written before it was) never differs."""
        evidence = self.evidence.get(key)
        if not isinstance(evidence, dict):
            return {}
        return {field: evidence[field] for field, value in now.items()
                if evidence.get(field) is not None and evidence[field] != value}

    def to_dict(self) -> dict:
        out: dict = {"hints_on": self.hints_on.to_dict()}
        if self.hints_off is not None:
            out["hints_off"] = self.hints_off.to_dict()
        if self.llm_helps:
            out["llm_helps"] = dict(self.llm_helps)
        if self.evidence:
            out["evidence"] = self.evidence
        return out


def _weights_from(data, path: Path, where: str) -> EnsembleWeights:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of weights{where}, got {type(data).__name__}")
    known = {f.name for f in fields(EnsembleWeights)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}{where}; expected some of {sorted(known)}")
    try:
        return EnsembleWeights(**data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def parse_weight_set(data, path: Path) -> WeightSet:
    """A WeightSet from the file's JSON. Two formats: the flat one (weights chosen with hints
    on: {"pointwise": .., "pairwise": .., "listwise": .., "backbone": ..}) and the per-hint one
    ({"hints_on": {...}, "hints_off": {...}, "llm_helps": {...}, "evidence": {...}})."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of weights, got {type(data).__name__}")
    if "hints_on" not in data and "hints_off" not in data:
        return WeightSet(hints_on=_weights_from(data, path, ""), chosen=True)
    allowed = {"hints_on", "hints_off", "llm_helps", "evidence"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")
    if "hints_on" not in data:
        raise ValueError(f"{path}: has hints_off weights but no hints_on weights")
    helps = data.get("llm_helps", {})
    if not isinstance(helps, dict) or any(k not in HINT_KEYS.values() or not isinstance(v, bool)
                                          for k, v in helps.items()):
        raise ValueError(f"{path}: llm_helps must map hints_on/hints_off to true or false, got {helps!r}")
    evidence = data.get("evidence", {})
    if not isinstance(evidence, dict):
        raise ValueError(f"{path}: evidence must be a JSON object")
    return WeightSet(
        hints_on=_weights_from(data["hints_on"], path, " under hints_on"),
        hints_off=_weights_from(data["hints_off"], path, " under hints_off") if "hints_off" in data else None,
        chosen=True, llm_helps=helps, evidence=evidence)


def load_weight_set(adapter_dir: Path | None) -> WeightSet:
    """The weight set from ``adapter_dir/hybrid_weights.json``; defaults (not chosen) without one.

    A key left out of a weights object keeps its default; an unknown key or a bad value is
    an error naming the file.
    """
    if adapter_dir is None:
        return WeightSet()
    path = Path(adapter_dir) / WEIGHTS_FILE
    if not path.is_file():
        log.info("no %s in %s: default ensemble weights", WEIGHTS_FILE, adapter_dir)
        return WeightSet()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable JSON ({e})") from None
    weights = parse_weight_set(data, path)
    log.info("ensemble weights from %s: %s", path, weights)
    return weights


def load_weights(adapter_dir: Path | None) -> EnsembleWeights:
    """The hints-on weights of ``adapter_dir/hybrid_weights.json`` (either format), defaults otherwise."""
    return load_weight_set(adapter_dir).hints_on


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


NUMERICS_FIELDS = ("device", "dtype", "bf16_units")  # engine info fields recorded as a choice's ``scored_on``
# RankerConfig fields that shape the mode scores a choice mixes, recorded in its evidence;
# weights are served only under the same values (``WeightSet.served_over``)
SCORING_CONFIG_FIELDS = ("pairwise_budget", "listwise_shuffles", "history_token_budget")


def _chosen_elsewhere_reason(chosen: Mapping[str, object], now: Mapping[str, object]) -> str:
    """Why weights chosen under ``chosen`` (recorded values that differ) are not served ``now``."""
    parts = []
    if "backbone_model" in chosen:
        parts.append(f"weights chosen over {chosen['backbone_model']} candidates, this stack serves {now['backbone_model']}")
    if config := [f for f in SCORING_CONFIG_FIELDS if f in chosen]:
        parts.append("weights chosen with " + ", ".join(f"{f} {chosen[f]}" for f in config) + ", this ranker runs "
                     + ", ".join(f"{f} {now[f]}" for f in config))
    return "; ".join(parts)


def _numerics_class(numerics: Mapping[str, str | None]) -> tuple[str, str | None, str | None]:
    """What decides rounding (``NUMERICS_FIELDS``): device type (cuda:0 and cuda alike),
    dtype, the CPU's bf16 units."""
    device, dtype, units = (numerics.get(k) for k in NUMERICS_FIELDS)
    return str(device or "cpu").split(":")[0], dtype, units


def _describe_numerics(cls: tuple[str, str | None, str | None]) -> str:
    device, dtype, units = cls
    return f"{dtype} on {device}" + (f" ({units})" if units else "")
