"""How much the adapter knows beyond its hint: per-mode answer loss on instruction requests
it was not tuned on, against chance and against a hint-only model.

For every question of N requests that the adapter's own run never reached (its
``train_config.json`` gives the data's seed and the requests it saw; the tuning order is
``training.collate.BatchPlan``'s), the engine scores the question's labels as served and
the loss is -log p(answer) with p renormalised over the question's labels. References:
chance (log of the label count) and, for listwise, a hint-only model that puts
p(k) ~ exp(-beta * (backbone rank of k - 1)) on the candidates, beta fitted on these very
requests (an optimistic baseline), and two content-only models of the same form over a
per-request z-scored feature: genre overlap (cosine of the candidate's genres with the
genres of the user's history) and popularity (log ratings in the whole dataset). Listwise
loss above the hint-only loss on hints-on requests means the adapter does not even use its
hint fully; a content-only model below chance on hints-off requests means there is signal
in the text the adapter could have learnt.

    python -m bench.answer_loss --data <requests folder> --requests 400 --threads 2 --out F
    RECRANKER_ADAPTER=<other> python -m bench.answer_loss --data <its requests> --paired-with F --out G

``--paired-with`` another adapter's report: per mode, the mean of (this - that) per request
over the requests both scored without hints, with a 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench.item_features import genre_matrix, genre_overlap
from bench.report import write_report
from common.checksum import sha256_file
from common.stats import PAIRED_RESAMPLES, bootstrap_ci
from ranker.chat import to_scoring_prompt
from ranker.types import Prompt
from stack.build import build_ranker, load_split, resolve_adapter
from stack.settings import Settings
from training.collate import GROUP_STEPS
from training.data_io import read_json, read_jsonl


def unseen_indices(n: int, seed: int, seen: int, per_step: int) -> np.ndarray:
    """Requests past the last optimizer step's group: the adapter's run never reached them."""
    perm = np.random.default_rng([seed, 0]).permutation(n)
    group = per_step * GROUP_STEPS
    return perm[math.ceil(seen / group) * group:]


def hint_only_loss(ranks: np.ndarray, n: int) -> tuple[float, float]:
    """(best beta, mean loss) of p(rank r) ~ exp(-beta (r - 1)) over n candidates."""
    best = (0.0, math.log(n))
    for beta in np.linspace(0, 3, 61):
        logz = np.log(np.exp(-beta * np.arange(n)).sum())
        loss = float(np.mean(beta * (ranks - 1) + logz))
        best = min(best, (beta, loss), key=lambda b: b[1])
    return best


def feature_only_loss(features: list[np.ndarray], targets: list[int]) -> tuple[float, float]:
    """(best beta, mean loss) of p(k) ~ exp(beta * z_k), z the feature z-scored per request."""
    zs = [(f - f.mean()) / (f.std() or 1.0) for f in features]
    best = (0.0, float(np.mean([math.log(len(z)) for z in zs])))
    for beta in np.linspace(-3, 3, 121):
        loss = float(np.mean([np.logaddexp.reduce(beta * z) - beta * z[t] for z, t in zip(zs, targets)]))
        best = min(best, (beta, loss), key=lambda b: b[1])
    return best


def content_features(genres: np.ndarray, log_counts: np.ndarray, item_index: dict[str, int],
                     row: dict) -> tuple[np.ndarray, np.ndarray]:
    """(genre overlap, log popularity) of the request's candidates, in catalogue order."""
    cands = [item_index[i] for i in row["items"]]
    return genre_overlap(genres, [item_index[i] for i in row["history"]], cands), log_counts[cands]


def paired(mine: list[dict], theirs: list[dict], mode: str, seed: int = 0) -> dict | None:
    """Mean of (mine - theirs) per request, both without hints, with a 95% bootstrap interval."""
    other = {r["index"]: r for r in theirs if not r["hints"] and mode in r["losses"]}
    diffs = np.array([r["losses"][mode] - other[r["index"]]["losses"][mode]
                      for r in mine if not r["hints"] and r["index"] in other and mode in r["losses"]])
    if not len(diffs):
        return None
    lo, hi = bootstrap_ci(diffs, n_boot=PAIRED_RESAMPLES, seed=seed)
    return {"mode": mode, "requests": len(diffs), "diff": float(diffs.mean()), "ci": [lo, hi]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the requests folder the adapter was tuned on")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--paired-with", type=Path, help="another adapter's answer_loss report (JSON)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/answer-loss.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings()
    adapter = resolve_adapter(settings)
    if adapter is None:
        raise SystemExit("answer_loss measures an adapter: RECRANKER_ADAPTER must name one")
    folder = Path(adapter.path)
    cfg = read_json(folder / "train_config.json")
    if cfg["dataset"]["examples_sha256"] != sha256_file(args.data / "examples.jsonl"):
        raise SystemExit(f"{args.data} is not the data {adapter.name} was tuned on (examples sha256 differs)")
    if cfg["config"].get("init_adapter"):
        raise SystemExit(f"{adapter.name} continued another adapter: its unseen requests are not known here")
    rows = read_jsonl(args.data / "examples.jsonl")
    per_step = int(cfg["config"]["batch_size"]) * int(cfg["config"]["grad_accum"])
    seen = int(read_json(folder / "metrics.json")["steps"]) * per_step
    pick = unseen_indices(len(rows), int(cfg["config"]["seed"]), seen, per_step)[: args.requests]
    engine = build_ranker(settings.model_copy(update={"prefix_cache_mb": 0}), adapter).engine
    losses: dict[tuple[str, str, bool], list[float]] = defaultdict(list)
    chance: dict[str, float] = {}
    ranks: dict[tuple[str, bool], list[int]] = defaultdict(list)
    content: dict[tuple[str, bool], list[tuple[np.ndarray, np.ndarray, int]]] = defaultdict(list)
    per_request: list[dict] = []
    ds = load_split(settings).dataset
    genres = genre_matrix(ds)
    log_counts = np.log1p(np.bincount(ds.items, minlength=len(ds.item_ids)))
    for i in pick:
        row = rows[int(i)]
        qs = row["questions"]
        labels = sorted({lab for q in qs for lab in q["labels"]})
        prompts = [to_scoring_prompt(engine, Prompt(row["system"], row["shared"], q["specific"], tuple(q["labels"])))
                   for q in qs]
        lp = engine.score(prompts, labels).logprobs
        mine: dict[str, list[float]] = defaultdict(list)
        for q, scores in zip(qs, lp):
            cols = [labels.index(lab) for lab in q["labels"]]
            x = scores[cols] - np.logaddexp.reduce(scores[cols])
            loss = float(-x[q["labels"].index(q["answer"])])
            losses[(q["mode"], row["backbone"], row["hints"])].append(loss)
            mine[q["mode"]].append(loss)
            chance[q["mode"]] = math.log(len(q["labels"])) if q["mode"] != "listwise" else math.log(len(row["items"]))
        ranks[(row["backbone"], row["hints"])].append(int(row["target_backbone_rank"]))
        per_request.append({"index": int(i), "backbone": row["backbone"], "hints": bool(row["hints"]),
                            "losses": {m: float(np.mean(v)) for m, v in mine.items()}})
        genre, popularity = content_features(genres, log_counts, ds.item_index, row)
        content[(row["backbone"], row["hints"])].append((genre, popularity, row["items"].index(row["target"])))
    report = {"adapter": adapter.name, "data": str(args.data), "requests": len(pick), "seen_by_adapter": seen,
              "chance": chance, "rows": []}
    print(f"{'mode':<10}{'backbone':<10}{'hints':<7}{'n':>6}{'loss':>8}{'chance':>8}{'hint-only':>11}"
          f"{'genres-only':>13}{'popularity-only':>17}")
    for (mode, backbone, hints), vals in sorted(losses.items()):
        refs = {}
        if mode == "listwise":
            key = (backbone, hints)
            n_items = len(content[key][0][0])  # candidates per request (the requests' n_candidates)
            refs = {"hint_only": hint_only_loss(np.asarray(ranks[key]), n_items)[1],
                    "genres_only": feature_only_loss([c[0] for c in content[key]], [c[2] for c in content[key]])[1],
                    "popularity_only": feature_only_loss([c[1] for c in content[key]], [c[2] for c in content[key]])[1]}
        row = {"mode": mode, "backbone": backbone, "hints": hints, "questions": len(vals),
               "loss": float(np.mean(vals)), "chance": chance[mode], **refs}
        report["rows"].append(row)
        extra = "".join(f"{refs[k]:>{w}.3f}" for k, w in (("hint_only", 11), ("genres_only", 13),
                                                           ("popularity_only", 17))) if refs else ""
        print(f"{mode:<10}{backbone:<10}{str(hints):<7}{len(vals):>6}{row['loss']:>8.3f}{chance[mode]:>8.3f}{extra}")
    report["requests_scored"] = per_request
    if args.paired_with:
        theirs = json.loads(args.paired_with.read_text())
        report["paired_with"] = {"report": str(args.paired_with), "adapter": theirs["adapter"], "rows": []}
        for mode in ("pointwise", "pairwise", "listwise"):
            d = paired(per_request, theirs["requests_scored"], mode)
            if d:
                report["paired_with"]["rows"].append(d)
                print(f"{mode}: this - {theirs['adapter']}, {d['requests']} requests without hints: "
                      f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
