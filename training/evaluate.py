"""Offline evaluation under the paper's protocol (docs/method.md §9).

For each evaluated user the backbone's top-N unseen items are the candidates; the LLM
re-ranks them in every mode at once (one Ranker call gives each mode's scores and the
hybrid). A user whose held-out item is not among the candidates is a miss in every row,
whatever the LLM says, so the LLM only runs for users whose item is a candidate; this
makes a full-population evaluation affordable on a CPU without changing any number.

Per-user outcomes are appended to a JSONL cache keyed by everything that can change
them, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from candidate_gen.base import NUM_CANDIDATES
from candidate_gen.evaluate import liked_history
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import Split
from ranker.ensemble import EnsembleWeights, combine, order_by
from ranker.modes.registry import MODE_REGISTRY
from ranker.ranker import Ranker, RankRequest
from ranker.types import MODES, Mode
from stack.profiles import candidates_from_items, profile_from_events
from training.report import paired_differences, summarize_rows

log = logging.getLogger(__name__)

Stage = Literal["valid", "test"]
ROWS = ("backbone", *MODE_REGISTRY, "hybrid")


@dataclass(frozen=True)
class EvalConfig:
    stage: Stage = "test"
    num_candidates: int = NUM_CANDIDATES
    use_hints: bool = True
    users: int | None = None  # evaluate a seeded random subset; None = every user with a held-out item
    seed: int = 0
    modes: tuple[Mode, ...] = MODES

    def __post_init__(self) -> None:
        # no upper bound of its own: listwise windows lists longer than its identifiers
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.users is not None and self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")


@dataclass
class UserOutcome:
    user_id: str
    target: str  # held-out item id
    candidates: list[str]  # backbone order, best first
    backbone_scores: list[float]
    mode_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # z-scores; empty when not run
    degraded: bool = False

    @property
    def target_is_candidate(self) -> bool:
        return self.target in self.candidates


def seeded_subset(values: Sequence[int], size: int | None, seed: int) -> list[int]:
    """``size`` of ``values`` drawn without replacement with ``seed``, sorted; all when None or
    not fewer than ``size``."""
    if size is None or size >= len(values):
        return list(values)
    return sorted(np.random.default_rng(seed).choice(values, size=size, replace=False).tolist())


def select_users(split: Split, config: EvalConfig) -> list[int]:
    return seeded_subset(split.eval_users(config.stage), config.users, config.seed)


def scores_by_mode(result) -> dict[str, dict[str, float]]:
    """Per mode, each item's normalised score from a RankResult (what an outcome stores)."""
    return {m: {it.item_id: it.mode_scores[m] for it in result.items} for m in result.modes}


def retrieve(split: Split, generator: CandidateGenerator, users: Sequence[int], config: EvalConfig):
    """The backbone's top-N unseen items (and scores) for each user, in one batched search."""
    histories = [liked_history(split, u, config.stage) for u in users]
    excludes = [split.users[u].seen(config.stage) for u in users]
    return generator.candidates_many(list(users), histories, config.num_candidates, excludes, threads=None)


def cache_key(config: EvalConfig, ranker: Ranker, backbone_meta: dict, candidate_info: dict | None = None) -> str:
    """Everything that can change a user's outcome; a different key means a different file.
    ``candidate_info``: what re-orders the backbone's candidates (``CandidateGenerator.info``)."""
    parts = {
        "config": asdict(config) | {"users": None},  # the subset doesn't change per-user outcomes
        "ranker": asdict(ranker.config),
        "model": ranker.engine.model_name,
        "adapter": getattr(ranker.engine, "adapter_revision", None),
        # dtype and merged LoRA move scores too: a float32 run must not read a bfloat16 cache
        "numerics": {k: getattr(ranker.engine, "info", {}).get(k) for k in ("dtype", "adapter_merged")},
        "backbone": [backbone_meta.get("fingerprint"), backbone_meta.get("created")],
        "backbone_model": backbone_meta.get("model"),
    }
    if candidate_info:  # only when set, so the keys of runs without it stay valid
        parts["candidates"] = candidate_info
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_outcomes(path: Path) -> dict[str, UserOutcome]:
    """The outcomes an evaluation cache holds, by user id (a line cut by an interruption is skipped)."""
    done: dict[str, UserOutcome] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption: that user runs again
            done[row["user_id"]] = UserOutcome(**row)
    return done


def collect(
    split: Split,
    generator: CandidateGenerator,
    ranker: Ranker,
    config: EvalConfig,
    cache_path: Path | None = None,
    progress: bool = True,
) -> list[UserOutcome]:
    """Every selected user's outcome; LLM work only where the target is a candidate."""
    ds = split.dataset
    users = select_users(split, config)
    done = read_outcomes(cache_path) if cache_path else {}
    if cache_path:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
    outcomes = []
    retrieved = retrieve(split, generator, users, config)
    sink = cache_path.open("a") if cache_path else None
    try:
        for u, cands in tqdm(list(zip(users, retrieved)), disable=None if progress else True,  # bar on a TTY only
                             desc=f"eval {config.stage}"):
            uid = ds.user_ids[u]
            if uid in done:
                outcomes.append(done[uid])
                continue
            items = [c.item for c in cands]
            outcome = UserOutcome(
                user_id=uid,
                target=ds.item_ids[split.users[u].held_out(config.stage)],
                candidates=[ds.item_ids[i] for i in items],
                backbone_scores=[c.score for c in cands],
            )
            if outcome.target_is_candidate:
                profile = profile_from_events(ds, uid, split.users[u].context(config.stage))
                request = RankRequest(
                    user=profile,
                    candidates=candidates_from_items(ds, items, outcome.backbone_scores),
                    modes=config.modes,
                    k=len(items),
                    use_hints=config.use_hints,
                    # every mode's scores, whatever the served weights: the hybrid is recomputed
                    # here for any weights, and the served ones may be unset for hints off
                    weights=ranker.weights,
                    score_all_modes=True,
                )
                result = ranker.rank(request)
                outcome.degraded = result.degraded
                outcome.mode_scores = scores_by_mode(result)
            outcomes.append(outcome)
            if sink:
                sink.write(json.dumps(asdict(outcome)) + "\n")
                sink.flush()
    finally:
        if sink:
            sink.close()
    return outcomes


def hybrid_ranking(o: UserOutcome, weights: EnsembleWeights) -> list[str]:
    """The hybrid order of one user's candidates for any weights: the serving ensemble's
    ``combine`` (what ``hybrid_scores`` does after normalising) over the per-mode z-scores
    the ranker returned, so evaluation and serving share one formula."""
    backbone = dict(zip(o.candidates, o.backbone_scores))
    hybrid = combine(o.candidates, o.mode_scores, backbone, weights)
    return order_by(hybrid, o.candidates, backbone)


def row_ranks(outcomes: Iterable[UserOutcome], weights: EnsembleWeights) -> dict[str, list[int | None]]:
    """0-based rank of the target per user in each row; None = not in the list (a miss)."""
    ranks: dict[str, list[int | None]] = {row: [] for row in ROWS}
    for o in outcomes:
        backbone = dict(zip(o.candidates, o.backbone_scores))
        orders = {"backbone": list(o.candidates), "hybrid": hybrid_ranking(o, weights)}
        for m in MODES:
            orders[m] = order_by(o.mode_scores[m], o.candidates, backbone) if m in o.mode_scores else list(o.candidates)
        for row in ROWS:
            order = orders[row]
            ranks[row].append(order.index(o.target) if o.target_is_candidate else None)
    return ranks


def candidate_ceiling(outcomes: Sequence[UserOutcome]) -> float:
    """Share of users whose held-out item is among the candidates: no re-ranking scores a hit
    for the others, so this bounds HR@k of every row."""
    return sum(o.target_is_candidate for o in outcomes) / len(outcomes) if outcomes else float("nan")


def report(outcomes: list[UserOutcome], weights: EnsembleWeights, seed: int = 0) -> dict:
    """Rows over all users and over the subset whose target is a candidate, with intervals,
    and the paired differences (row - backbone on the same users) with bootstrap intervals."""
    subset = [o for o in outcomes if o.target_is_candidate]
    ranks = row_ranks(outcomes, weights)
    return {
        "users": len(outcomes),
        "users_with_target_in_candidates": len(subset),
        "candidate_ceiling": candidate_ceiling(outcomes),
        "degraded_users": sum(o.degraded for o in outcomes),
        "rows": summarize_rows(ranks, seed=seed),
        "paired": paired_differences(ranks, seed=seed),
        "rows_target_in_candidates": summarize_rows(row_ranks(subset, weights), seed=seed) if subset else {},
        "weights": weights.to_dict(),
    }
