import json
import math

import pytest

from ranker.ensemble import WEIGHTS_FILE, EnsembleWeights, hybrid_scores, load_weights, order_by, zscore

IDS = ["a", "b", "c"]
R32 = math.sqrt(1.5)  # z-score of 1, 2, 3 is -sqrt(3/2), 0, +sqrt(3/2) (population std)


def test_zscore_known_values():
    assert zscore({"a": 1.0, "b": 2.0, "c": 3.0}, IDS) == pytest.approx({"a": -R32, "b": 0.0, "c": R32})


def test_zscore_constant_missing_and_empty_are_neutral():
    assert zscore({"a": 2.0, "b": 2.0, "c": 2.0}, IDS) == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert zscore({"a": 1.0, "b": 3.0}, IDS) == pytest.approx({"a": -1.0, "b": 1.0, "c": 0.0})
    assert zscore({}, IDS) == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_hybrid_hand_computed():
    w = EnsembleWeights(pointwise=0.5, pairwise=0.25, listwise=2.0, backbone=0.1)
    modes = {
        "pointwise": {"a": 1.0, "b": 2.0, "c": 3.0},  # z: -R32, 0, R32
        "pairwise": {"a": 0.9, "b": 0.1, "c": 0.5},  # z: R32, -R32, 0
    }
    backbone = {"a": 10.0, "b": 0.0, "c": None}  # z over scored: +1, -1; c neutral 0
    hybrid, normalised = hybrid_scores(IDS, modes, backbone, w)
    assert set(normalised) == {"pointwise", "pairwise"}  # listwise did not run: its weight is unused
    assert hybrid["a"] == pytest.approx(0.5 * -R32 + 0.25 * R32 + 0.1 * 1)
    assert hybrid["b"] == pytest.approx(0.5 * 0 + 0.25 * -R32 + 0.1 * -1)
    assert hybrid["c"] == pytest.approx(0.5 * R32 + 0.25 * 0 + 0.1 * 0)
    assert order_by(hybrid, IDS, backbone) == ["c", "a", "b"]


def test_hybrid_without_modes_is_backbone_prior():
    hybrid, normalised = hybrid_scores(IDS, {"pointwise": {}}, {"a": 1.0, "b": 3.0, "c": None}, EnsembleWeights())
    assert normalised == {}
    assert hybrid == pytest.approx({"a": -0.3, "b": 0.3, "c": 0.0})


def test_hybrid_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode"):
        hybrid_scores(IDS, {"zeroshot": {"a": 1.0}}, {}, EnsembleWeights())


def test_order_ties_go_to_backbone_then_input_order():
    scores = {"a": 1.0, "b": 1.0, "c": 1.0}
    assert order_by(scores, IDS, {"a": None, "b": 0.2, "c": 0.5}) == ["c", "b", "a"]
    assert order_by(scores, IDS, {}) == ["a", "b", "c"]


def test_weights_validation():
    assert EnsembleWeights().pointwise == pytest.approx(1 / 3)
    for bad in (-0.1, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="pairwise"):
            EnsembleWeights(pairwise=bad)


def test_load_weights_defaults_without_dir_or_file(tmp_path):
    assert load_weights(None) == EnsembleWeights()
    assert load_weights(tmp_path) == EnsembleWeights()


def test_load_weights_reads_file_and_keeps_defaults_for_missing_keys(tmp_path):
    (tmp_path / WEIGHTS_FILE).write_text(json.dumps({"pointwise": 0.2, "pairwise": 0.5, "listwise": 0.3}))
    assert load_weights(tmp_path) == EnsembleWeights(0.2, 0.5, 0.3, EnsembleWeights().backbone)
    (tmp_path / WEIGHTS_FILE).write_text(json.dumps({"pointwise": 1, "pairwise": 0, "listwise": 0, "backbone": 2}))
    assert load_weights(tmp_path) == EnsembleWeights(1.0, 0.0, 0.0, 2.0)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not readable JSON"),
        ("[0.3, 0.3]", "expected a JSON object"),
        ('{"pointwize": 0.5}', "unknown key"),
        ('{"backbone": -1}', "backbone"),
    ],
)
def test_load_weights_bad_file_names_the_problem(tmp_path, content, message):
    (tmp_path / WEIGHTS_FILE).write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_weights(tmp_path)
    assert WEIGHTS_FILE in str(err.value)


def test_weights_name_the_choice_contexts_that_differ():
    from ranker.ensemble import WeightSet

    ws = WeightSet(chosen=True, evidence={"hints_on": {"adapter_revision": "r1", "backbone_model": "lightgcn"},
                                          "hints_off": {"diff": 0.0}})  # recorded before contexts were
    assert ws.chosen_elsewhere("hints_on", adapter_revision="r1", backbone_model="lightgcn") == {}
    assert ws.chosen_elsewhere("hints_on", adapter_revision="r2", backbone_model="sasrec") == {
        "adapter_revision": "r1", "backbone_model": "lightgcn"}
    assert ws.chosen_elsewhere("hints_off", adapter_revision="r2", backbone_model="sasrec") == {}
    assert ws.chosen_elsewhere("missing", adapter_revision="r2") == {}


def test_weights_chosen_over_another_backbone_serve_the_backbone_alone_there():
    from ranker.ensemble import BACKBONE_ONLY, WeightSet

    mix = EnsembleWeights(pointwise=0.5, pairwise=0.0, listwise=0.5, backbone=0.3)
    ws = WeightSet(hints_on=mix, hints_off=BACKBONE_ONLY, chosen=True,
                   llm_helps={"hints_on": True, "hints_off": False},
                   evidence={"hints_on": {"backbone_model": "lightgcn"}, "hints_off": {"backbone_model": "lightgcn"}})
    assert ws.served_over("lightgcn") is ws
    assert ws.modes_used(True) == ("pointwise", "listwise")
    over_sasrec = ws.served_over("sasrec")
    assert over_sasrec.for_hints(True) == BACKBONE_ONLY and over_sasrec.modes_used(True) == ()
    assert set(over_sasrec.withheld) == {"hints_on", "hints_off"}
    assert over_sasrec.describe().startswith(
        "hints_on: backbone only, no LLM (weights chosen over lightgcn candidates, this stack serves sasrec)")
    assert over_sasrec.evidence == ws.evidence  # the validation record is kept, only the serving changes
    # a file written before the backbone was recorded is served as it is
    unrecorded = WeightSet(hints_on=mix, chosen=True, evidence={"hints_on": {"diff": 0.01}})
    assert unrecorded.served_over("sasrec").for_hints(True) == mix


def test_weights_chosen_with_other_scoring_settings_serve_the_backbone_alone():
    from ranker.ensemble import BACKBONE_ONLY, WeightSet

    mix = EnsembleWeights(pointwise=0.0, pairwise=0.75, listwise=0.25, backbone=0.0)
    chosen = {"backbone_model": "lightgcn", "pairwise_budget": 9, "listwise_shuffles": 3, "history_token_budget": 200}
    ws = WeightSet(hints_on=mix, chosen=True, llm_helps={"hints_on": True}, evidence={"hints_on": chosen})
    served = {"pairwise_budget": 9, "listwise_shuffles": 3, "history_token_budget": 200, "seed": 5}
    assert ws.served_over("lightgcn", served) is ws  # fields that do not shape the scores (seed) do not count
    other = ws.served_over("lightgcn", {**served, "pairwise_budget": 5})
    assert other.for_hints(True) == BACKBONE_ONLY and other.modes_used(True) == ()
    assert other.withheld == {"hints_on": "weights chosen with pairwise_budget 9, this ranker runs pairwise_budget 5"}
    both = ws.served_over("sasrec", {**served, "listwise_shuffles": 10})
    assert both.withheld["hints_on"] == ("weights chosen over lightgcn candidates, this stack serves sasrec; "
                                         "weights chosen with listwise_shuffles 3, this ranker runs listwise_shuffles 10")
    # without a config the backbone alone is compared; a choice that recorded no settings is served under any
    assert ws.served_over("lightgcn") is ws
    unrecorded = WeightSet(hints_on=mix, chosen=True, evidence={"hints_on": {"backbone_model": "lightgcn"}})
    assert unrecorded.served_over("lightgcn", {**served, "pairwise_budget": 5}) is unrecorded


def test_weights_chosen_with_other_numerics_are_named_for_a_re_check_not_withheld():
    from ranker.ensemble import BACKBONE_ONLY, WeightSet

    mix = EnsembleWeights(pointwise=0.5, pairwise=0.0, listwise=0.5, backbone=0.3)
    amx = {"device": "cpu", "dtype": "bfloat16", "bf16_units": "amx_bf16"}
    ws = WeightSet(hints_on=mix, hints_off=BACKBONE_ONLY, chosen=True,
                   evidence={"hints_on": {"scored_on": amx}, "hints_off": {"scored_on": amx}})
    assert ws.scored_with_other_numerics(amx) == {}
    assert ws.scored_with_other_numerics({**amx, "device": "cpu"}) == {}
    other = ws.scored_with_other_numerics({"device": "cpu", "dtype": "bfloat16", "bf16_units": "avx512_bf16"})
    # hints off serves no LLM: nothing of it depends on the LLM's rounding
    assert other == {"hints_on": "weights chosen on scores computed as bfloat16 on cpu (amx_bf16), "
                                 "this engine computes bfloat16 on cpu (avx512_bf16)"}
    assert set(ws.scored_with_other_numerics({"device": "cpu", "dtype": "float32", "bf16_units": None})) == {"hints_on"}
    gpu = WeightSet(hints_on=mix, chosen=True,
                    evidence={"hints_on": {"scored_on": {"device": "cuda", "dtype": "bfloat16", "bf16_units": None}}})
    assert gpu.scored_with_other_numerics({"device": "cuda:0", "dtype": "bfloat16", "bf16_units": None}) == {}
    # unknown on either side: nothing to compare
    assert ws.scored_with_other_numerics({}) == {}
    assert WeightSet(hints_on=mix, chosen=True, evidence={"hints_on": {"diff": 0.01}}).scored_with_other_numerics(amx) == {}
    assert ws.for_hints(True) == mix  # a note to re-check, the weights are still served
