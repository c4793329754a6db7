"""The model card is built from the files a tune run writes."""

from __future__ import annotations

import json

from training.card import write_card


def test_card_from_a_tune_folder(tmp_path):
    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in range(1, 13)))
    manifest = {"dataset": "ml-100k", "data_fingerprint": "f" * 64, "sampling": {"method": "adaptive", "n_draws": 40,
                "n_unique": 30}, "seed": 0, "n_examples": 120, "counts": {"pointwise": 40}, "hints": True,
                "backbone": {"name": "lightgcn"}}
    (tmp_path / "train_config.json").write_text(json.dumps({
        "base_model": {"name": "smollm2-135m-instruct", "source_sha256": "abc"}, "code_revision": "deadbeef",
        "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "config": {"batch_size": 2, "grad_accum": 4}, "dataset": {"manifest": manifest}}))
    (tmp_path / "metrics.json").write_text(json.dumps({
        "steps": 12, "planned_steps": 20, "stopped": "max_minutes", "train_seconds": 600, "mean_tokens": 380,
        "loss_first": 2.0, "loss_last": 2.0 / 12, "loss_curve": [2.0 / s for s in range(1, 13)]}))
    card = write_card(tmp_path, None, "recranker tune --data d --out o").read_text()
    assert "recranker tune --data d --out o" in card
    assert "an experiment, not served by default" in card  # only the shipped folder says it is served
    assert "12 optimizer steps of 20 planned (stopped by max_minutes), 96 examples seen" in card
    assert "--max-lora-rank 8" in card and "q_proj, v_proj" in card
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert "genres" not in card  # titles only unless the examples were rendered with genres

    config = json.loads((tmp_path / "train_config.json").read_text())
    config["dataset"]["manifest"]["config"] = {"prompt": {"genres": True}}
    (tmp_path / "train_config.json").write_text(json.dumps(config))
    assert "item text: title and genres" in write_card(tmp_path, None, "cmd").read_text()
    assert "catalogue prompt layout" not in write_card(tmp_path, None, "cmd").read_text()
    config["dataset"]["manifest"]["config"] = {"prompt": {"genres": True, "layout": "catalogue"}}
    (tmp_path / "train_config.json").write_text(json.dumps(config))
    assert "catalogue prompt layout: candidates listed once" in write_card(tmp_path, None, "cmd").read_text()
    (tmp_path / "train_config.json").write_text(json.dumps(config | {"dataset": {"manifest": manifest}}))


def test_card_says_whether_the_llm_is_used(tmp_path):
    from ranker.ensemble import EnsembleWeights
    from training.weights import BACKBONE_ONLY, Selection, save_weights, weight_set_from

    test_card_from_a_tune_folder(tmp_path)
    ev = {"metric": "NDCG@3", "users": 300, "best_llm_weights": EnsembleWeights().to_dict(), "diff": 0.002,
          "ci": [-0.004, 0.008], "cross_validated": {"diff": -0.001, "ci": [-0.006, 0.004]}, "rule": "r",
          "backbone_model": "sasrec"}
    ws = weight_set_from({True: Selection(BACKBONE_ONLY, False, ev)})
    save_weights(ws, tmp_path, {})
    card = write_card(tmp_path, None, "cmd").read_text()
    assert "hints_on: backbone only, no LLM (validation: LLM does not beat the backbone)" in card
    assert "+0.0020 [95% CI -0.0040, +0.0080]" in card and "backbone only (no LLM)" in card
    assert "refuses `use_hints: false`" in card
    assert "Chosen over sasrec candidates: a service over another backbone's candidates answers in" in card


def test_card_names_the_recorded_thread_count():
    from training.card import _threads

    assert _threads(1) == "one torch thread"
    assert _threads(2) == "2 torch threads"
    assert _threads(None) == "torch's default threads"


def test_card_says_when_the_evaluated_hybrid_is_not_the_served_one(tmp_path):
    from training.weights import BACKBONE_ONLY, Selection, save_weights, weight_set_from

    test_card_from_a_tune_folder(tmp_path)
    ev = {"metric": "NDCG@3", "users": 9, "best_llm_weights": BACKBONE_ONLY.to_dict(), "diff": 0.0, "ci": [0, 0]}
    save_weights(weight_set_from({True: Selection(BACKBONE_ONLY, False, ev)}), tmp_path, {})
    rows = {"backbone": {m: 0.1 for m in ("HR@3", "NDCG@3", "HR@5", "NDCG@5")}}
    mix = {"pointwise": 0.5, "pairwise": 0.0, "listwise": 0.5, "backbone": 0.3}
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"weight_set": {"hints_on": mix},
                                     "with_hints": {"rows": rows, "users": 9}}))
    card = write_card(tmp_path, eval_json, "cmd").read_text()
    assert f"Hybrid row: weights {mix} (not the served ones, {BACKBONE_ONLY.to_dict()})" in card
