"""Train pop, MF, LightGCN and SASRec on ML-100K and compare them on the test users.

Protocol: leave-one-out on likes; each test user's held-out like is ranked against every
item the user had not consumed before it (full ranking, HR/NDCG @3,5,10). Prints training
seconds per backbone and the metrics table, checks that every learned backbone beats pop
on NDCG@10, and writes bench/out/backbones.json.

    python -m bench.bench_backbones                     # all four, seed 0
    python -m bench.bench_backbones --models mf sasrec --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from bench.report import machine, write_report
from candidate_gen.data import load_movielens_100k
from candidate_gen.evaluate import evaluate_backbone
from candidate_gen.split import leave_one_out
from candidate_gen.train import MODELS, train_backbone

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "backbones.json"
COLUMNS = ("HR@3", "NDCG@3", "HR@5", "NDCG@5", "HR@10", "NDCG@10")


def run(data_dir: Path, models: list[str], seed: int, threads: int) -> dict:
    t = time.perf_counter()
    split = leave_one_out(load_movielens_100k(data_dir / "ml-100k"))
    print(f"loaded ml-100k + split in {time.perf_counter() - t:.1f}s: {split.counts()}")
    results = {}
    for model in models:
        backbone, metrics = train_backbone(split, model, seed=seed, progress=True, threads=threads)
        t = time.perf_counter()
        test = evaluate_backbone(backbone, split, "test")
        results[model] = {**metrics, "test": test["metrics"], "test_users": test["users"],
                          "eval_seconds": time.perf_counter() - t}  # fmt: skip
        print(f"{model:>9}: trained in {metrics['train_seconds']:6.1f}s (best epoch {metrics['best_epoch']}, "
              f"{metrics['epochs_run']} run), test NDCG@10 {test['metrics']['NDCG@10']:.4f}")  # fmt: skip
    return {"dataset": "ml-100k", "fingerprint": split.dataset.fingerprint, "seed": seed, "threads": threads,
            "machine": machine(torch=torch.__version__),
            "results": results}  # fmt: skip


def print_table(results: dict) -> None:
    print(f"\n{'model':>9} {'train_s':>8} " + " ".join(f"{c:>8}" for c in COLUMNS))
    for model, r in results.items():
        print(f"{model:>9} {r['train_seconds']:8.1f} " + " ".join(f"{r['test'][c]:8.4f}" for c in COLUMNS))


def beats_pop(results: dict) -> dict[str, bool]:
    if "pop" not in results:
        return {}
    pop = results["pop"]["test"]["NDCG@10"]
    return {m: r["test"]["NDCG@10"] > pop for m, r in results.items() if m != "pop"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data", help="folder holding ml-100k/")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = run(args.data_dir, args.models, args.seed, args.threads)
    print_table(report["results"])
    report["beats_pop_ndcg10"] = beats_pop(report["results"])
    for model, ok in report["beats_pop_ndcg10"].items():
        print(f"{model} beats pop on NDCG@10: {'yes' if ok else 'NO'}")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
