"""What ranks new items without an LLM: the bar a cold-start LLM mode has to clear.

The cases of ``recranker new-items`` (``training.new_items``: a seeded 20% of the catalogue
plays new items no backbone saw; per user whose held-out like is new, that item and 9 other
new items, history without new items), ranked by item content alone: the cosine of a
candidate's genres with the genre counts of the user's liked history (all of it, or the
last few likes), by release year closeness to the likes' mean year, and newest release
first. Each row's NDCG@3 and HR@3, and its paired difference against the random order on the same users (the
score-free order the LLM rows of ``recranker new-items`` are compared with). Same cases,
same seed, so the rows can be read beside that command's. No LLM, seconds.

With ``--llm NAME=OUTCOMES`` (the ``--outcomes`` file of ``recranker new-items`` on the same
stage, share and seed; repeatable) each LLM row joins the table, and every row is also
paired with the year-closeness row on the same users: the bar an LLM has to clear here.

    python -m bench.new_items_content --stage valid --out docs/bench/new-items-content-valid.json
    python -m bench.new_items_content --stage valid --llm clean=<outcomes.jsonl> --out ...

With ``--title-vectors`` the base model's own picture of the titles joins as rows too: each
candidate scored by the cosine of its title vector with the mean vector of the liked
history (``bench.title_knowledge``: a middle and the last layer; all likes, the last 5, the
last 2). No tuning; one forward pass per title.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.item_features import genre_matrix, genre_overlap, release_year
from bench.report import machine, write_report
from bench.title_knowledge import base_model_vectors, feature_fn, feature_names
from candidate_gen.recency_choice import target_ranks
from stack.build import load_split
from stack.settings import Settings
from training.evaluate import read_outcomes, row_ranks
from training.new_items import MODES_ONLY, hold_out_items, new_item_cases
from training.report import paired_differences, summarize_rows

CONTENT_BAR = "year"  # the strongest content row on validation: the bar for the LLM rows


def liked_items(case) -> list[int]:
    """The case's liked history, oldest first (its whole history where it likes nothing)."""
    return [e.item for e in case.history if e.liked] or [e.item for e in case.history]


def target_positions(cases) -> np.ndarray:
    """Each case's held-out item's place in its given (seeded random) candidate order."""
    return np.array([case.candidates.index(case.target) for case in cases], dtype=np.int64)


def content_rows(genres: np.ndarray, years: np.ndarray, cases, recent: int) -> dict[str, list[int]]:
    """Per row (random, genres of all likes, genres of the last ``recent`` likes, year
    closeness, newest first), each case's 0-based rank of its held-out item, ties in the given
    (random) order. ``genres``: (items, genres) 0/1; ``years``: per item, NaN where unknown.
    Every case has the same number of candidates (``new_item_cases``)."""
    scores: dict[str, list[np.ndarray]] = {"genres_all_likes": [], f"genres_last_{recent}": [], "year": [],
                                           "newest_first": []}
    for case in cases:
        liked = liked_items(case)
        scores["genres_all_likes"].append(genre_overlap(genres, liked, case.candidates))
        scores[f"genres_last_{recent}"].append(genre_overlap(genres, liked[-recent:], case.candidates))
        mean_year = np.nanmean(years[liked]) if liked and not np.all(np.isnan(years[liked])) else np.nan
        closeness = -np.abs(years[case.candidates] - mean_year)
        scores["year"].append(np.nan_to_num(closeness, nan=-np.inf))
        scores["newest_first"].append(np.nan_to_num(years[case.candidates], nan=-np.inf))
    target_pos = target_positions(cases)
    rows = {"backbone": target_pos.tolist()}  # the given order is the seeded random one
    for name, per_case in scores.items():
        rows[name] = target_ranks(np.stack(per_case), target_pos).tolist() if cases else []
    return rows


def title_vector_rows(vectors: dict[int, np.ndarray], cases) -> dict[str, list[int]]:
    """Per layer and window of ``bench.title_knowledge``, each case's 0-based rank of its held-out
    item by title-vector similarity to the liked history (ties in the given random order)."""
    if not cases:
        return {f"titles_{name}": [] for name in feature_names(vectors)}
    features = feature_fn(vectors)
    scores = np.stack([features(np.asarray(case.candidates), liked_items(case)) for case in cases])  # (C, F, N)
    target_pos = target_positions(cases)
    return {f"titles_{name}": target_ranks(scores[:, f], target_pos).tolist()
            for f, name in enumerate(feature_names(vectors))}


def llm_rows(name: str, path: Path, ds, cases) -> dict[str, list[int]]:
    """The LLM rows (``name:mode``) of a ``recranker new-items --outcomes`` file, in the order
    of ``cases``; refuses a file whose users or candidates are not these cases'."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such outcomes file")
    by_user = read_outcomes(path)
    ordered = []
    for case in cases:
        o = by_user.get(ds.user_ids[case.user])
        if o is None or o.candidates != [ds.item_ids[i] for i in case.candidates]:
            raise SystemExit(f"{path}: not the outcomes of these cases (user {ds.user_ids[case.user]} missing or "
                             "with other candidates): run recranker new-items with the same --stage, --share, --seed")
        ordered.append(o)
    ranks = row_ranks(ordered, MODES_ONLY)
    return {f"{name}:{row}": ranks[row] for row in ranks if row != "backbone"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("valid", "test"), default="valid")
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--recent", type=int, default=5, help="likes in the 'last likes' genre row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm", action="append", default=[], metavar="NAME=OUTCOMES",
                    help="an LLM's per-user outcomes from recranker new-items --outcomes (repeatable)")
    ap.add_argument("--title-vectors", action="store_true",
                    help="add the base model's title-vector rows (bench.title_knowledge; ~2 min on 2 cores)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/new-items-content.json"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    split = load_split(Settings())
    new_items = hold_out_items(split.dataset.n_items, args.share, args.seed)
    cases = new_item_cases(split, new_items, args.stage, args.candidates, args.seed)
    ds = split.dataset
    rows = content_rows(genre_matrix(ds), np.array([release_year(t) for t in ds.titles]), cases, args.recent)
    if args.title_vectors:
        rows |= title_vector_rows(base_model_vectors(Settings(), ds.titles)[2], cases)
    for spec in args.llm:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--llm wants NAME=OUTCOMES, got {spec!r}")
        rows |= llm_rows(name, Path(path), ds, cases)
    summary = summarize_rows(rows, seed=args.seed)
    paired = paired_differences(rows, seed=args.seed)
    vs_bar = paired_differences(rows, baseline=CONTENT_BAR, seed=args.seed)
    print(f"{args.stage}: {len(cases)} users whose held-out like is one of {len(new_items)} new items")
    print(f"| row | NDCG@3 | HR@3 | NDCG@3 - random order [95% CI] | NDCG@3 - {CONTENT_BAR} [95% CI] |")
    print("|---|---|---|---|---|")

    def cell(d) -> str:
        return f"{d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]" if d else "-"

    for row, s in summary.items():
        print(f"| {'random order' if row == 'backbone' else row} | {s['NDCG@3']:.4f} | {s['HR@3']:.4f} | "
              f"{cell(paired.get(row, {}).get('NDCG@3'))} | {cell(vs_bar.get(row, {}).get('NDCG@3'))} |")
    write_report(args.out, {"stage": args.stage, "share": args.share, "candidates": args.candidates,
                            "seed": args.seed, "recent": args.recent, "users": len(cases),
                            "title_vectors": args.title_vectors,
                            "new_items": len(new_items), "llm": args.llm, "rows": summary,
                            "paired_vs_random": paired, f"paired_vs_{CONTENT_BAR}": vs_bar,
                            "seconds": time.perf_counter() - start, "machine": machine()})


if __name__ == "__main__":
    main()
