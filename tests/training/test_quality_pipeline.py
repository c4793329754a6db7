"""`recranker evaluate` and `recranker weights` end to end on a tiny dataset and a keyword
engine (the LLM is not the point here): paired differences per hint setting, the candidate
ceiling, and a weight file per hint setting that the service's loader reads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from candidate_gen.artifacts import LoadedBackbone
from candidate_gen.pop import PopBackbone
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import leave_one_out
from ranker.adapter import Adapter
from ranker.ensemble import WeightSet, load_weight_set
from ranker.ranker import Ranker, RankerConfig
from stack.build import Stack
from stack.settings import Settings
from tests.datasets import dataset_from_rows
from tests.ranker.test_ranker import KeywordEngine
from training import pipeline
from training.pipeline import DataChoice

N_USERS, N_ITEMS = 30, 16


def tiny_stack(adapter_dir: Path) -> Stack:
    rng = np.random.default_rng(0)
    titles = [f"Good film {k}" if k % 3 == 0 else f"Film {k}" for k in range(N_ITEMS)]
    rows = []
    for u in range(N_USERS):
        for t, i in enumerate(rng.choice(N_ITEMS, size=7, replace=False)):
            rows.append((u, int(i), float(rng.choice([2.0, 4.0, 5.0])), 1000 * u + t))
    ds = dataset_from_rows(rows, N_USERS, N_ITEMS, titles=titles)
    split = leave_one_out(ds)
    _, items = split.train_interactions()
    backbone = PopBackbone.fit(items, ds.n_items)
    loaded = LoadedBackbone(backbone, {"model": "pop", "fingerprint": ds.fingerprint, "created": "t"},
                            ds.item_ids, ds.user_ids)
    engine = KeywordEngine()
    adapter = Adapter(adapter_dir, "tiny", "rev", WeightSet())
    ranker = Ranker(engine, RankerConfig(pairwise_budget=1, listwise_shuffles=1), WeightSet())
    return Stack(ds, split, loaded, CandidateGenerator.from_backbone(backbone, "exact"), adapter, engine, ranker)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    stack = tiny_stack(adapter_dir)
    monkeypatch.setattr(pipeline, "_eval_stack", lambda *a, **k: stack)
    return Settings(_env_file=None, home=tmp_path / "home"), stack


def test_evaluate_reports_paired_differences_and_ceiling_per_hint_setting(tiny):
    settings, stack = tiny
    run = pipeline.evaluate_llm(settings, DataChoice(), backbone="pop", adapter=None, users=None, seed=1,
                                num_candidates=5, stage="test", hints="both")
    out = run.result
    assert set(out) >= {"rows", "paired", "candidate_ceiling", "with_hints", "without_hints", "weight_set"}
    # what "backbone" means in the rows: pop's own order, or re-ordered by its recency choice
    assert out["candidate_source"] in ("pop", "pop+recency") and \
        (out["candidate_source"] == "pop") == (out["candidate_order"] == {})
    assert any(f"{out['candidate_source']} candidates (5)" in t for t in run.tables)
    for key in ("with_hints", "without_hints"):
        res = out[key]
        assert 0 < res["candidate_ceiling"] == res["users_with_target_in_candidates"] / res["users"] <= 1
        assert set(res["paired"]) == {"pointwise", "pairwise", "listwise", "hybrid"}
        for row, stats in res["paired"].items():
            for metric in ("HR@3", "NDCG@3", "HR@5", "NDCG@5"):
                st = stats[metric]
                assert st["diff"] == pytest.approx(res["rows"][row][metric] - res["rows"]["backbone"][metric])
                assert st["ci"][0] <= st["diff"] <= st["ci"][1]
    assert out["rows"] == out["with_hints"]["rows"] and out["paired"] == out["with_hints"]["paired"]
    assert any("hybrid - backbone" in t for t in run.tables) and any("candidate ceiling" in t for t in run.tables)
    # hints only on by default in the CLI; 'on' alone gives one setting
    only_on = pipeline.evaluate_llm(settings, DataChoice(), backbone="pop", adapter=None, users=None, seed=1,
                                    num_candidates=5, stage="test", hints="on").result
    assert "without_hints" not in only_on and only_on["paired"] == out["paired"]


def test_weights_are_chosen_per_hint_setting_with_the_verdict(tiny, caplog):
    settings, stack = tiny
    summary = pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                             seed=0, num_candidates=5, hints="both")
    ws = load_weight_set(stack.adapter.path)
    assert ws.chosen and ws.hints_off is not None
    assert set(ws.llm_helps) == {"hints_on", "hints_off"}
    for key, helps in ws.llm_helps.items():
        ev = ws.evidence[key]
        assert ev["stage"] == "valid" and len(ev["ci"]) == 2
        served = ws.hints_on if key == "hints_on" else ws.hints_off
        assert helps == (ev["ci"][0] > 0 and ev["cross_validated"]["ci"][0] > 0)
        assert (served.pointwise + served.pairwise + served.listwise > 0) == helps  # no LLM unless it helps
    selection = json.loads((stack.adapter.path / "hybrid_weights_selection.json").read_text())
    assert selection["hints_on"]["top"] and summary["path"].endswith("hybrid_weights.json")

    # --hints off keeps the hints-on choice already in the file, and its selection record
    before = ws.hints_on
    pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                   seed=0, num_candidates=5, hints="off")
    assert load_weight_set(stack.adapter.path).hints_on == before
    after = json.loads((stack.adapter.path / "hybrid_weights_selection.json").read_text())
    assert after["hints_on"] == selection["hints_on"] and after["hints_off"]["top"]

    # and --hints on keeps the hints-off choice (it was dropped, and hints off refused, before)
    off_before = load_weight_set(stack.adapter.path)
    pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                   seed=0, num_candidates=5, hints="on")
    ws = load_weight_set(stack.adapter.path)
    assert ws.hints_off == off_before.hints_off is not None
    assert ws.llm_helps["hints_off"] == off_before.llm_helps["hints_off"]
    final = json.loads((stack.adapter.path / "hybrid_weights_selection.json").read_text())
    assert final["hints_off"] == after["hints_off"] and final["hints_on"]["top"]
    assert ws.evidence["hints_on"]["adapter_revision"] == stack.adapter.revision
    # the numerics that produced the verdict, as the engine reports them (the keyword double has none)
    assert ws.evidence["hints_on"]["scored_on"] == {"device": None, "dtype": None, "bf16_units": None}

    # and the scoring settings they were chosen under, as the ranker ran them (the service serves them only under those)
    assert {k: ws.evidence["hints_on"][k] for k in ("pairwise_budget", "listwise_shuffles", "history_token_budget")} \
        == {"pairwise_budget": 1, "listwise_shuffles": 1, "history_token_budget": 200}

    # weights chosen for another backbone or another revision of the adapter (retrained in
    # place) are not kept
    assert ws.evidence["hints_on"]["backbone_model"] == "pop"
    path = stack.adapter.path / "hybrid_weights.json"
    stored = json.loads(path.read_text())
    stored["evidence"]["hints_off"]["backbone_model"] = "sasrec"
    path.write_text(json.dumps(stored))
    with caplog.at_level("WARNING"):
        pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                       seed=0, num_candidates=5, hints="on")
    assert "hints-off weights were chosen for backbone sasrec, not pop: dropped" in caplog.text
    assert load_weight_set(stack.adapter.path).hints_off is None  # hints off refused until chosen again
    # so are hints-off weights chosen under another pairwise budget
    pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                   seed=0, num_candidates=5, hints="off")
    stored = json.loads(path.read_text())
    stored["evidence"]["hints_off"]["pairwise_budget"] = 9
    path.write_text(json.dumps(stored))
    caplog.clear()
    with caplog.at_level("WARNING"):
        pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                       seed=0, num_candidates=5, hints="on")
    assert "hints-off weights were chosen for pairwise budget 9, not 1: dropped" in caplog.text
    assert load_weight_set(stack.adapter.path).hints_off is None
    stored = json.loads(path.read_text())
    stored["evidence"]["hints_on"]["adapter_revision"] = "an-older-adapter"
    path.write_text(json.dumps(stored))
    with pytest.raises(pipeline.PipelineError, match="chosen for adapter revision an-older-adapter"):
        pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                       seed=0, num_candidates=5, hints="off")


def test_logistic_fusion_option_records_cross_validated_and_test_figures(tiny):
    settings, stack = tiny
    summary = pipeline.choose_hybrid_weights(settings, DataChoice(), backbone="pop", adapter=None, users=None,
                                             seed=0, num_candidates=5, hints="on", fusion="logistic", test_gap=True)
    d = summary["details"]["hints_on"]
    f = d["fusion"]
    assert f["served"] is False and set(f["coefficients"]) == {"bias", *f["features"]}
    assert f["validation_cross_validated"]["folds"] == 5 and len(f["test"]["ci"]) == 2
    assert f["validation_to_test_gap"] == pytest.approx(f["validation_cross_validated"]["diff"] - f["test"]["diff"])
    g = d["test_gap"]
    assert g["gap_in_sample"] == pytest.approx(d["diff"] - g["diff"])
    assert "fusion" in json.loads((stack.adapter.path / "hybrid_weights_selection.json").read_text())["hints_on"]


def test_logistic_regression_learns_the_informative_feature():
    from training.fusion import fit_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(float)
    w = fit_logistic(x, y, l2=1.0)
    assert w[2] > 2 and abs(w[1]) < 0.5 and abs(w[3]) < 0.5


def test_fusion_finds_a_mode_that_knows_the_answer():
    from training.evaluate import UserOutcome
    from training.fusion import learn_fusion

    rng = np.random.default_rng(1)

    def users(n):
        out = []
        for _ in range(n):
            cands = [f"i{k}" for k in range(6)]
            target = cands[int(rng.integers(6))]
            pw = {c: (1.5 if c == target else 0.0) + 0.5 * rng.normal() for c in cands}
            ls = {c: rng.normal() for c in cands}  # noise
            out.append(UserOutcome("u", target, cands, sorted(rng.normal(size=6).tolist(), reverse=True),
                                   mode_scores={"pointwise": pw, "listwise": ls}))
        return out

    res = learn_fusion(users(120), users(120), seed=0)
    assert res.coefficients["z_pointwise"] > abs(res.coefficients["z_listwise"])
    assert res.validation["ci"][0] > 0 and res.test["diff"] > 0
