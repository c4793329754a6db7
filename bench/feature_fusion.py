"""Is there signal beyond the backbone's order in what a prompt could show? (issue 9)

Before a field goes into the prompt (and an adapter is tuned to read it), check that it
carries information the backbone's order lacks *at serving time*: re-rank each user's
backbone top-N by z(backbone score) + sum_f w_f z(feature_f), with no LLM at all. A field
whose best fusion does not beat the backbone on validation (paired 95% bootstrap interval of
the per-user NDCG@3 difference, in sample and cross-validated) gives an LLM reading it
nothing to learn that would pay at serving time.

Features per candidate, from what the backbone may see (training likes) and the user's own
visible history:
- popularity: log(1 + training likes of the item, all users);
- genres: cosine of the item's genres with the genre counts of the user's visible likes;
- recent genres: the same over the last 5 likes;
- year: -|release year - median year of the user's likes| (year parsed from the title);
- co-likes: mean cosine similarity (over training likes) of the item with all the user's
  likes (item-kNN; ``candidate_gen.recency.CoLikes``);
- recent co-likes: the same with the user's last ``--recent`` likes only, a recency-aware
  collaborative signal an order-free backbone lacks (what ``RECRANKER_RECENCY_WEIGHT`` serves).

Each feature alone gets a fine grid of weights; all of them together a coarse one. Weights
are chosen on validation users by mean paired NDCG@3 difference (grid, backbone only first
so it wins ties); the selection is cross-validated over 5 folds as in `recranker weights`.
Test users are scored once, with the weights validation chose.

    RECRANKER_HOME=... RECRANKER_DATA_DIR=... python -m bench.feature_fusion --out docs/bench/feature-fusion.json
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.item_features import genre_matrix, genre_overlap, release_year
from bench.report import machine, write_report
from candidate_gen.evaluate import liked_history
from candidate_gen.recency import CoLikes, zscores
from candidate_gen.recency_choice import target_ranks
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import Split
from stack.build import load_backbone, load_split
from stack.settings import Settings
from training.evaluate import EvalConfig, retrieve, select_users
from common.stats import PAIRED_RESAMPLES, bootstrap_ci, cross_validated_diffs
from training.weights import metric_values

FEATURES = ("popularity", "genres", "recent_genres", "year", "colikes", "recent_colikes")
STEPS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # feature weight relative to the backbone's 1
COARSE_STEPS = (0.0, 0.25, 0.5, 1.0)  # for all features at once (4^6 points)
RECENT = 5
METRIC = "NDCG@3"


@dataclass
class Cases:
    """One stage's users: the held-out item's position in the backbone order (-1: not a
    candidate) and per-user z-scores of the backbone score and of every feature."""
    target_pos: np.ndarray  # (U,)
    backbone_z: np.ndarray  # (U, N)
    features: np.ndarray  # (U, F, N)


def candidate_features(items: np.ndarray, history: list[int], popularity: np.ndarray, genres: np.ndarray,
                       years: np.ndarray, colikes: CoLikes, recent: int = RECENT) -> np.ndarray:
    """(F, N) raw features of candidates ``items`` for a user whose visible likes are ``history``."""
    hist = np.asarray(history, dtype=np.int64)
    hist_years = years[hist][~np.isnan(years[hist])] if len(hist) else np.array([])
    centre = float(np.median(hist_years)) if len(hist_years) else float("nan")
    cand_years = years[items]
    year_fit = -np.abs(cand_years - centre) if not np.isnan(centre) else np.zeros(len(items))
    year_fit = np.where(np.isnan(year_fit), np.nanmean(year_fit) if np.any(~np.isnan(year_fit)) else 0.0, year_fit)
    return np.stack([popularity[items], genre_overlap(genres, hist, items),
                     genre_overlap(genres, hist[-recent:], items), year_fit,
                     colikes.recent_similarity(items, hist, max(len(hist), 1)),
                     colikes.recent_similarity(items, hist, recent)])


FeatureFn = Callable[[np.ndarray, list[int]], np.ndarray]  # (candidates, visible likes) -> (F, N) raw


def content_feature_fn(split: Split, recent: int) -> FeatureFn:
    """``candidate_features`` over this split's training likes, genres and titles."""
    _, train_items = split.train_interactions()
    popularity = np.log1p(np.bincount(train_items, minlength=split.dataset.n_items).astype(np.float64))
    genres = genre_matrix(split.dataset)
    years = np.array([release_year(t) for t in split.dataset.titles])
    colikes = CoLikes.from_likes(*split.train_interactions(), split.dataset.n_items)
    return lambda items, history: candidate_features(items, history, popularity, genres, years, colikes, recent)


def build_cases(split: Split, gen: CandidateGenerator, stage: str, num_candidates: int, features: FeatureFn) -> Cases:
    config = EvalConfig(stage=stage, num_candidates=num_candidates)
    users = select_users(split, config)
    cands = retrieve(split, gen, users, config)
    pos, backbone, rows = [], [], []
    for u, cs in zip(users, cands):
        items = np.array([c.item for c in cs], dtype=np.int64)
        hit = np.flatnonzero(items == split.users[u].held_out(stage))
        pos.append(int(hit[0]) if len(hit) else -1)
        backbone.append(zscores([c.score for c in cs]))
        rows.append(zscores(features(items, liked_history(split, u, stage))))
    return Cases(np.array(pos), np.stack(backbone), np.stack(rows))


def ranks_of(scores: np.ndarray, target_pos: np.ndarray) -> list[int | None]:
    """0-based rank of each user's target under ``scores`` (None: not a candidate); ties keep
    the candidates' order."""
    return [int(r) if r >= 0 else None for r in target_ranks(scores, target_pos)]


def given_ranks(cases: Cases) -> list[int | None]:
    """0-based rank of each user's target in the order the candidates came in (the backbone's)."""
    return [int(p) if p >= 0 else None for p in cases.target_pos]


def fused_ranks(cases: Cases, weights: np.ndarray) -> list[int | None]:
    """0-based rank of the target under z(backbone) + weights . z(features)."""
    return ranks_of(cases.backbone_z + np.einsum("f,ufn->un", weights, cases.features), cases.target_pos)


def diff_matrix(cases: Cases, grid: list[np.ndarray]) -> np.ndarray:
    """(grid, users) per-user fused - backbone NDCG@3."""
    base = metric_values(given_ranks(cases), METRIC)
    return np.stack([metric_values(fused_ranks(cases, w), METRIC) - base for w in grid])


def grid_for(active: tuple[int, ...], steps_per_feature: tuple[float, ...] = STEPS,
             n_features: int = len(FEATURES)) -> list[np.ndarray]:
    """Backbone only first, then every combination of the steps over the active features."""
    grid = [np.zeros(n_features)]
    for steps in itertools.product(steps_per_feature, repeat=len(active)):
        if any(steps):
            w = np.zeros(n_features)
            w[list(active)] = steps
            grid.append(w)
    return grid


def interval(values: np.ndarray) -> dict:
    lo, hi = bootstrap_ci(values, n_boot=PAIRED_RESAMPLES)
    return {"mean": float(values.mean()), "ci": [lo, hi]}


def evaluate_feature_set(valid: Cases, test: Cases, active: tuple[int, ...], names: tuple[str, ...] = FEATURES,
                         steps: tuple[float, ...] | None = None) -> dict:
    """Weights for the ``active`` features chosen on ``valid`` (fine steps for one feature,
    coarse ones for several unless ``steps`` says), then ``test`` scored once with them."""
    steps = steps or (STEPS if len(active) == 1 else COARSE_STEPS)
    grid = grid_for(active, steps, len(names))
    diffs = diff_matrix(valid, grid)
    means = diffs.mean(axis=1)
    best = int(np.flatnonzero(np.isclose(means, means.max()))[0])
    chosen = grid[best]
    test_diffs = diff_matrix(test, [chosen])[0]
    return {"features": [names[i] for i in active],
            "chosen_weights": {names[i]: float(chosen[i]) for i in active},
            "valid": interval(diffs[best]),
            "valid_cross_validated": interval(cross_validated_diffs(diffs)),
            "test": interval(test_diffs),
            "grid_points": len(grid)}


def fusion_arguments(description: str, out: str) -> argparse.ArgumentParser:
    """The options every fusion bench takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["lightgcn", "sasrec"])
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="backbone seed (as `recranker evaluate --seed`)")
    ap.add_argument("--out", default=out)
    return ap


def fusion_row(order: str, result: dict) -> str:
    """One markdown row of ``evaluate_feature_set``'s result."""
    cells = [f"{result[k]['mean']:+.4f} [{result[k]['ci'][0]:+.4f}, {result[k]['ci'][1]:+.4f}]"
             for k in ("valid", "valid_cross_validated", "test")]
    w = ", ".join(f"{k} {v:g}" for k, v in result["chosen_weights"].items())
    return f"| {order} | {' + '.join(result['features'])} | {w} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = fusion_arguments(__doc__.splitlines()[0], "docs/bench/feature-fusion.json")
    ap.add_argument("--recent", type=int, default=RECENT, help="how many of the latest likes count as recent")
    args = ap.parse_args()
    settings = Settings()
    start = time.perf_counter()
    split = load_split(settings, args.dataset)
    sets = [(i,) for i in range(len(FEATURES))] + [tuple(range(len(FEATURES)))]
    results: dict = {}
    print(f"fusion z(backbone) + w . z(feature), {METRIC} difference vs the backbone, weights chosen on validation")
    print("| backbone | features | chosen w | valid | valid CV | test |")
    print("|---|---|---|---|---|---|")
    features = content_feature_fn(split, args.recent)  # the same for every backbone
    for model in args.models:
        gen = CandidateGenerator.from_backbone(load_backbone(settings, split, model, args.seed).backbone, "exact")
        valid = build_cases(split, gen, "valid", args.candidates, features)
        test = build_cases(split, gen, "test", args.candidates, features)
        base = {stage: float(metric_values(given_ranks(c), METRIC).mean())
                for stage, c in (("valid", valid), ("test", test))}
        print(f"| {model} | backbone alone: valid {base['valid']:.4f}, test {base['test']:.4f} | | | | |")
        results[model] = {"backbone": base, "fusions": [evaluate_feature_set(valid, test, s) for s in sets]}
        for r in results[model]["fusions"]:
            print(fusion_row(model, r))
    payload = {"dataset": args.dataset, "candidates": args.candidates, "recent": args.recent, "metric": METRIC,
               "steps": STEPS, "coarse_steps": COARSE_STEPS,
               "results": results, "seconds": time.perf_counter() - start,
               "machine": machine(),
               "command": f"python -m bench.feature_fusion --dataset {args.dataset} --models {' '.join(args.models)} "
                          f"--candidates {args.candidates} --recent {args.recent} --seed {args.seed}"}
    write_report(args.out, payload)


if __name__ == "__main__":
    main()
