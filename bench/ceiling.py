"""Candidate ceiling (issue 9, lever 4): the share of evaluated users whose held-out item is
among the backbone's top-N candidates, for N = 10, 20, 30, on validation and test users.

No re-ranking can score a hit for the other users, so this bounds HR@k of every LLM row; it
equals the backbone's own HR@N over its full ranking. Candidates are retrieved exactly as
`recranker evaluate` retrieves them (training.evaluate.retrieve: the backbone's top-N
unseen items through the exact FAISS index). Backbones are the saved ones under
RECRANKER_HOME (trained and saved when absent). No LLM is involved.

    RECRANKER_HOME=... RECRANKER_DATA_DIR=... python -m bench.ceiling --json docs/bench/ceiling.json
"""

from __future__ import annotations

import argparse
import time

from bench.report import machine, write_report
from candidate_gen.retrieve import CandidateGenerator
from stack.build import load_backbone, load_split
from stack.settings import Settings
from training.evaluate import EvalConfig, retrieve, select_users


def ceilings(settings: Settings, dataset: str, models: list[str], sizes: list[int], seed: int) -> dict:
    split = load_split(settings, dataset)
    out: dict = {}
    for model in models:
        loaded = load_backbone(settings, split, model, seed)
        gen = CandidateGenerator.from_backbone(loaded.backbone, "exact")
        out[model] = {"backbone_meta": {k: loaded.meta.get(k) for k in ("created", "best_epoch", "epochs_run",
                                                                        "stopped_by", "seed")}}
        for stage in ("valid", "test"):
            row = {}
            for n in sizes:
                config = EvalConfig(stage=stage, num_candidates=n)
                users = select_users(split, config)
                cands = retrieve(split, gen, users, config)
                hits = sum(split.users[u].held_out(stage) in {c.item for c in cs} for u, cs in zip(users, cands))
                row[str(n)] = {"users": len(users), "target_in_candidates": hits, "ceiling": hits / len(users)}
            out[model][stage] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["lightgcn", "sasrec"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[10, 20, 30])
    ap.add_argument("--seed", type=int, default=0, help="backbone seed (as `recranker evaluate --seed`)")
    ap.add_argument("--json", default="docs/bench/ceiling.json")
    args = ap.parse_args()
    settings = Settings()
    t = time.perf_counter()
    result = ceilings(settings, args.dataset, args.models, args.sizes, args.seed)
    print(f"candidate ceiling on {args.dataset} (share of users whose held-out item is a candidate)")
    print("| backbone | users | " + " | ".join(f"N={n}" for n in args.sizes) + " |")
    print("|---|---|" + "---|" * len(args.sizes))
    for model, res in result.items():
        for stage in ("valid", "test"):
            cells = [f"{res[stage][str(n)]['ceiling']:.3f} ({res[stage][str(n)]['target_in_candidates']})"
                     for n in args.sizes]
            print(f"| {model} | {stage} {res[stage][str(args.sizes[0])]['users']} | " + " | ".join(cells) + " |")
    payload = {"dataset": args.dataset, "sizes": args.sizes, "results": result,
               "seconds": time.perf_counter() - t, "machine": machine(),
               "command": f"python -m bench.ceiling --dataset {args.dataset} --models {' '.join(args.models)} "
                          f"--sizes {' '.join(map(str, args.sizes))} --seed {args.seed}"}
    write_report(args.json, payload)


if __name__ == "__main__":
    main()
