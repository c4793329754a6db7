"""Does the base LLM know anything about the films that the backbone's order lacks? (issue 9)

bench.feature_fusion showed that genres, year and popularity add nothing to the backbone's
top-10 at serving time. What is left for a title-reading re-ranker is what the model itself
knows about the titles. This measures it without any tuning: every item's title goes
through the base model once, its hidden states averaged over the title's tokens (a middle
layer and the last), centred over the catalogue and L2-normalised; a candidate's feature is
the cosine of its vector with the mean vector of the user's likes (all of them, or the last
5 or 2). The candidates and their order are the ones the service serves: the backbone's
top-N, re-ordered by co-likes of the latest likes where the backbone chose that on
validation (``candidate_gen.recency``). If the re-ranking z(served score) + w z(feature), w
chosen on validation users, does not beat the served order (paired 95% CI, in sample and
cross-validated), the model's own picture of the films carries no preference signal that a
tuned adapter could turn into gains here.

Also printed: each feature alone as the order (no backbone), against a random order.

    RECRANKER_HOME=... RECRANKER_DATA_DIR=... python -m bench.title_knowledge --out docs/bench/title-knowledge.json
"""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from bench.feature_fusion import (METRIC, Cases, build_cases, evaluate_feature_set, fusion_arguments, fusion_row,
                                  given_ranks, interval, ranks_of)
from bench.report import machine, write_report
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import Split
from ranker.model import prepare_model
from ranker.text import sanitize_title
from stack.build import load_backbone, load_split, recency_rescorer
from stack.settings import Settings
from training.weights import metric_values

WINDOWS = {"all": None, "last5": 5, "last2": 2}
RANDOM_ORDERS = 20


def title_vectors(model_path, titles: list[str], layers: tuple[int, ...], batch: int = 64) -> dict[int, np.ndarray]:
    """Per requested hidden-state layer, (items, hidden) mean over each title's tokens,
    centred over the catalogue and L2-normalised (raw LLM states share a large common
    direction that would make every cosine close to 1)."""
    tok = AutoTokenizer.from_pretrained(model_path)
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    out: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    with torch.inference_mode():
        for start in range(0, len(titles), batch):
            enc = tok(titles[start:start + batch], return_tensors="pt", padding=True)
            states = model(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            for layer in layers:
                out[layer].append(((states[layer] * mask).sum(1) / mask.sum(1)).numpy())
    vectors = {}
    for layer, parts in out.items():
        v = np.concatenate(parts).astype(np.float64)
        v -= v.mean(axis=0)
        vectors[layer] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return vectors


def base_model_vectors(settings: Settings, titles: list[str]) -> tuple[str, tuple[int, ...], dict[int, np.ndarray]]:
    """(model path, layers, title vectors) of the settings' base model, from a middle layer and the last."""
    model_path = prepare_model(settings.base_model, settings.models_dir)
    n_layers = AutoConfig.from_pretrained(model_path).num_hidden_layers
    layers = (n_layers // 2, n_layers)
    return str(model_path), layers, title_vectors(model_path, [sanitize_title(t) for t in titles], layers)


def similarity_to_likes(vectors: np.ndarray, items: np.ndarray, history: list[int], window: int | None) -> np.ndarray:
    """Cosine of each candidate's vector with the mean vector of the (last ``window``) likes; 0 without likes."""
    liked = history if window is None else history[-window:]
    if not liked:
        return np.zeros(len(items))
    profile = vectors[liked].mean(axis=0)
    norm = np.linalg.norm(profile)
    return vectors[items] @ profile / norm if norm > 0 else np.zeros(len(items))


def feature_names(layers) -> tuple[str, ...]:
    """Names of ``feature_fn``'s rows, in its order."""
    return tuple(f"layer{layer}_{w}" for layer in layers for w in WINDOWS)


def feature_fn(vectors: dict[int, np.ndarray]):
    """One row per layer x window (``feature_names(vectors)``), for ``build_cases``."""
    def features(items: np.ndarray, history: list[int]) -> np.ndarray:
        return np.stack([similarity_to_likes(v, items, history, w) for v in vectors.values() for w in WINDOWS.values()])
    return features


def alone(cases: Cases, f: int, seed: int = 0) -> dict:
    """NDCG@3 of the candidates ordered by feature ``f`` alone, and paired against the mean of
    ``RANDOM_ORDERS`` random orders (the same users)."""
    by_feature = metric_values(ranks_of(cases.features[:, f], cases.target_pos), METRIC)
    rng = np.random.default_rng(seed)
    shuffled = np.mean([metric_values(ranks_of(rng.random(cases.backbone_z.shape), cases.target_pos), METRIC)
                        for _ in range(RANDOM_ORDERS)], axis=0)
    return {"ndcg": float(by_feature.mean()), "random": float(shuffled.mean()),
            "minus_random": interval(by_feature - shuffled)}


def main() -> None:
    args = fusion_arguments(__doc__.splitlines()[0], "docs/bench/title-knowledge.json").parse_args()
    settings = Settings()
    start = time.perf_counter()
    split: Split = load_split(settings, args.dataset)
    model_path, layers, vectors = base_model_vectors(settings, split.dataset.titles)
    embed_seconds = time.perf_counter() - start
    names = feature_names(layers)
    features = feature_fn(vectors)
    results: dict = {}
    print(f"title vectors from {model_path} (layers {layers}), {len(split.dataset.titles)} titles, {embed_seconds:.0f} s")
    print(f"fusion z(backbone) + w . z(feature), {METRIC} difference vs the served order, weights chosen on validation")
    print("| served order | features | chosen w | valid | valid CV | test |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        loaded = load_backbone(settings, split, model, args.seed)
        gen = CandidateGenerator.from_backbone(loaded.backbone, "exact",
                                               recency=recency_rescorer(settings, split, loaded.meta))
        valid = build_cases(split, gen, "valid", args.candidates, features)
        test = build_cases(split, gen, "test", args.candidates, features)
        results[model] = {
            "served": gen.source, "recency": gen.info,
            "backbone": {stage: float(metric_values(given_ranks(c), METRIC).mean())
                         for stage, c in (("valid", valid), ("test", test))},
            "alone_valid": {names[f]: alone(valid, f) for f in range(len(names))},
            "fusions": [evaluate_feature_set(valid, test, (f,), names) for f in range(len(names))]}
        for name, a in results[model]["alone_valid"].items():
            ci = a["minus_random"]
            print(f"| {gen.source} | {name} alone (valid) | | {a['ndcg']:.4f} vs random {a['random']:.4f}: "
                  f"{ci['mean']:+.4f} [{ci['ci'][0]:+.4f}, {ci['ci'][1]:+.4f}] | | |")
        for r in results[model]["fusions"]:
            print(fusion_row(gen.source, r))
    write_report(args.out, {
        "dataset": args.dataset, "candidates": args.candidates, "metric": METRIC,
        "model": str(model_path), "layers": list(layers), "windows": list(WINDOWS), "results": results,
        "embed_seconds": embed_seconds, "seconds": time.perf_counter() - start, "machine": machine(),
        "command": f"python -m bench.title_knowledge --dataset {args.dataset} --models {' '.join(args.models)} "
                   f"--candidates {args.candidates} --seed {args.seed}"})


if __name__ == "__main__":
    main()
