import logging
import re
from collections.abc import Sequence

import numpy as np
import pytest

from ranker.engines.base import Engine, EngineError, LabelError, ScoreBatch, ScoringPrompt
from ranker.ensemble import EnsembleWeights, WeightSet
from ranker.ranker import STAGES, Ranker, RankerConfig, RankRequest
from ranker.types import MODES, Candidate, HistoryEntry, UserProfile


class KeywordEngine(Engine):
    """A test double that reads the prompt like a reader would: it likes titles containing
    "Good" and has a mild bias for the first position. Label mass is always 0.5."""

    model_name = "keyword"

    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        self.suffixes: list[str] = []
        self.reported: list[tuple[int, int]] = []  # (forward_tokens, calls) per score()

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        return list(range(len(labels)))

    def chat_template(self, system: str, user: str) -> str:
        return f"<sys>{system}</sys><user>{user}</user><assistant>"

    def score(self, prompts: Sequence[ScoringPrompt], labels: Sequence[str]) -> ScoreBatch:
        self.calls.append((len(prompts), tuple(labels)))
        self.suffixes += [p.suffix for p in prompts]
        rows = np.array([self._row(p.suffix, labels) for p in prompts]) * 0.5
        tokens = sum(len(p.prefix) + len(p.suffix) for p in prompts) // 4
        calls = len({p.prefix for p in prompts})  # like HFEngine: one pass per distinct prefix
        self.reported.append((tokens, calls))
        return ScoreBatch(logprobs=np.log(rows), forward_tokens=tokens, calls=calls)

    @staticmethod
    def _row(suffix: str, labels: Sequence[str]) -> np.ndarray:
        """Probabilities over ALL labels: the question's own labels get mass, the others ~0."""
        titles = re.findall(r'"([^"]*)"', suffix) or re.findall(r"^[A-T]\. (.*)$", suffix, flags=re.M)
        good = ["Good" in t for t in titles]
        row = np.full(len(labels), 1e-9)
        if suffix.startswith("Rate "):  # pointwise: mostly 5 for a good title, mostly 2 otherwise
            probs = [0.05, 0.8, 0.05, 0.05, 0.05] if not good[0] else [0.05, 0.05, 0.05, 0.05, 0.8]
            own = ["1", "2", "3", "4", "5"]
        elif suffix.startswith("Prefer "):
            p_yes = 0.5 + 0.4 * (good[0] - good[1]) + 0.05  # + first-position bias
            probs, own = [p_yes, 1 - p_yes], ["Yes", "No"]
        else:  # listwise: identifiers beyond the shown ones get ~0
            own = list("ABCDEFGHIJKLMNOPQRST")
            weights = np.full(len(own), 1e-3)
            for k, g in enumerate(good):
                weights[k] = (5.0 if g else 1.0) + (0.5 if k == 0 else 0.0)
            probs = weights / weights.sum()
        for label, p in zip(own, probs):
            row[labels.index(label)] = p
        return row


class BrokenEngine(KeywordEngine):
    def score(self, prompts, labels):
        raise EngineError("GPU on fire")


class NaNEngine(KeywordEngine):
    def score(self, prompts, labels):
        return ScoreBatch(logprobs=np.full((len(prompts), len(labels)), np.nan), forward_tokens=1, calls=1)


class ShortEngine(KeywordEngine):
    def score(self, prompts, labels):
        batch = super().score(prompts, labels)
        return ScoreBatch(batch.logprobs[:-1], batch.forward_tokens, batch.calls)


class SplitLabelEngine(KeywordEngine):
    def label_token_ids(self, labels):
        if "Yes" in labels:
            raise LabelError("label 'Yes' is not exactly one token")
        return super().label_token_ids(labels)


USER = UserProfile("u1", (HistoryEntry("h1", "Liked Movie", 5), HistoryEntry("h2", "Hated Movie", 1)))
# the backbone prefers the "Meh" titles; the keyword engine prefers "Good one"
CANDS = [
    Candidate("m1", "Meh 1", 0.9),
    Candidate("m2", "Meh 2", 0.8),
    Candidate("g", "Good one", 0.5),
    Candidate("m3", "Meh 3", None),
]


def request(**kw) -> RankRequest:
    return RankRequest(USER, list(CANDS), **({"k": 3} | kw))


def test_known_answer_all_modes():
    engine = KeywordEngine()
    res = Ranker(engine).rank(request())
    assert not res.degraded and res.degraded_reason is None
    assert res.modes == MODES
    assert [i.item_id for i in res.items][0] == "g"
    assert len(res.items) == 3
    top = res.items[0]
    assert top.title == "Good one" and top.backbone_score == 0.5
    assert set(top.mode_scores) == set(MODES) and all(v > 0 for v in top.mode_scores.values())
    assert res.label_mass == pytest.approx({m: 0.5 for m in MODES}, abs=2e-3)  # listwise: unshown letters ~0
    assert set(res.timings) == set(STAGES) and all(v >= 0 for v in res.timings.values())
    assert res.llm_calls == 1 and res.forward_tokens > 0  # one prefix for all three modes
    # ONE engine call: 4 pointwise + 2 * min(5, 6 pairs) pairwise + 3 listwise shuffles, all labels
    assert engine.calls == [(4 + 10 + 3, ("1", "2", "3", "4", "5", "Yes", "No", *"ABCDEFGHIJKLMNOPQRST"))]


def test_rank_many_shares_one_engine_call():
    two = [Candidate("x", "Good x", 0.1), Candidate("y", "Y", 0.2)]
    other = RankRequest(UserProfile("u2", USER.history[:1]), two, k=2)
    reqs = [request(), other, request(modes=("pointwise",))]
    engine = KeywordEngine()
    batched = Ranker(engine).rank_many(reqs)
    assert [n for n, _ in engine.calls] == [(4 + 10 + 3) + (2 + 2 + 3) + 4]
    singles = [Ranker(KeywordEngine()).rank(r) for r in reqs]
    for b, s in zip(batched, singles):
        assert [i.item_id for i in b.items] == [i.item_id for i in s.items]
        assert [i.score for i in b.items] == pytest.approx([i.score for i in s.items])
    assert batched[1].items[0].item_id == "x"
    assert batched[2].modes == ("pointwise",) and set(batched[2].items[0].mode_scores) == {"pointwise"}
    # the shared calls' tokens and calls are split across requests, adding up to what the engine reported
    assert sum(r.forward_tokens for r in batched) == sum(t for t, _ in engine.reported)
    # requests 1 and 3 are the same user: one shared prefix for every mode of both
    assert sum(r.llm_calls for r in batched) == sum(c for _, c in engine.reported) == 2


def test_engine_failure_gives_degraded_backbone_order(caplog):
    with caplog.at_level(logging.ERROR, logger="ranker.ranker"):
        res = Ranker(BrokenEngine()).rank(request(k=4))
    assert res.degraded and "GPU on fire" in res.degraded_reason
    assert [i.item_id for i in res.items] == ["m1", "m2", "m3", "g"]  # unscored m3 sits at the average
    assert res.modes == () and res.llm_calls == 0
    assert any("scoring failed" in r.message for r in caplog.records)


@pytest.mark.parametrize("engine_cls, reason", [(NaNEngine, "NaN"), (ShortEngine, "shape")])
def test_unusable_engine_output_degrades(engine_cls, reason):
    res = Ranker(engine_cls()).rank(request())
    assert res.degraded and reason in res.degraded_reason
    assert res.items[0].item_id == "m1"


def test_failure_in_one_request_leaves_the_others_ranked(monkeypatch):
    import dataclasses

    from ranker.modes.registry import MODE_REGISTRY

    spec = MODE_REGISTRY["pointwise"]

    def plan(user, candidates, **kw):
        if user.user_id == "bad":
            raise RuntimeError("boom")
        return spec.plan(user, candidates, **kw)

    monkeypatch.setitem(MODE_REGISTRY, "pointwise", dataclasses.replace(spec, plan=plan))
    bad = RankRequest(UserProfile("bad"), list(CANDS))
    good, failed = Ranker(KeywordEngine()).rank_many([request(), bad])
    assert not good.degraded and good.items[0].item_id == "g"
    assert failed.degraded and "boom" in failed.degraded_reason


def test_labels_checked_at_construction():
    with pytest.raises(LabelError, match="Yes"):
        Ranker(SplitLabelEngine())


def test_hints_switch():
    on, off = KeywordEngine(), KeywordEngine()
    Ranker(on).rank(request())
    Ranker(off, RankerConfig(use_hints=True)).rank(request(use_hints=False))
    assert any("Hint:" in s for s in on.suffixes)
    assert not any("Hint:" in s for s in off.suffixes)


def test_weights_override_backbone_only():
    res = Ranker(KeywordEngine()).rank(request(k=4, weights=EnsembleWeights(0, 0, 0, 1)))
    assert [i.item_id for i in res.items] == ["m1", "m2", "m3", "g"]


def test_zero_weight_modes_cost_no_llm_time():
    engine = KeywordEngine()
    served = WeightSet(hints_on=EnsembleWeights(pointwise=1, pairwise=0, listwise=0, backbone=0.3), chosen=True)
    res = Ranker(engine, weights=served).rank(request())
    assert res.modes == ("pointwise",) and engine.calls == [(4, engine.calls[0][1])]  # 4 pointwise prompts only
    # backbone only: no engine call at all, the backbone's order, not degraded
    engine = KeywordEngine()
    backbone_only = WeightSet(hints_on=EnsembleWeights(0, 0, 0, 1), chosen=True)
    res = Ranker(engine, weights=backbone_only).rank(request(k=4))
    assert engine.calls == [] and res.modes == () and not res.degraded and res.llm_calls == 0
    assert [i.item_id for i in res.items] == ["m1", "m2", "m3", "g"]
    # the request's own weights bring a mode back; score_all_modes scores every listed mode
    engine = KeywordEngine()
    res = Ranker(engine, weights=backbone_only).rank(request(weights=EnsembleWeights(0, 1, 0, 0)))
    assert res.modes == ("pairwise",) and res.items[0].item_id == "g"
    engine = KeywordEngine()
    res = Ranker(engine, weights=backbone_only).rank(request(score_all_modes=True))
    assert res.modes == MODES and [n for n, _ in engine.calls] == [4 + 10 + 3]


def test_new_items_alone_keep_their_order_without_llm_weights():
    """docs/service.md: items without a backbone score are ranked by the LLM only when a mode
    has weight; under backbone-only weights a request of new items keeps the order it came in."""
    new = [Candidate("n1", "Zed", None), Candidate("n2", "Good new", None), Candidate("n3", "Alpha", None)]
    backbone_only = WeightSet(hints_on=EnsembleWeights(0, 0, 0, 1), chosen=True)
    engine = KeywordEngine()
    res = Ranker(engine, weights=backbone_only).rank(RankRequest(USER, new, k=3))
    assert engine.calls == [] and not res.degraded
    assert [i.item_id for i in res.items] == ["n1", "n2", "n3"] and all(i.backbone_score is None for i in res.items)
    res = Ranker(KeywordEngine(), weights=backbone_only).rank(
        RankRequest(USER, new, k=3, weights=EnsembleWeights(pointwise=1, pairwise=0, listwise=0, backbone=0.3)))
    assert res.modes == ("pointwise",) and res.items[0].item_id == "n2"


def test_hints_off_uses_its_own_weights_or_is_refused():
    on_only = WeightSet(hints_on=EnsembleWeights(1, 0, 0, 0), chosen=True)  # the old flat file
    res = Ranker(KeywordEngine(), weights=on_only).rank(request(use_hints=False))
    assert res.degraded and "chosen with hints on" in res.degraded_reason
    # the request's own weights are allowed with hints off
    assert not Ranker(KeywordEngine(), weights=on_only).rank(request(use_hints=False, weights=EnsembleWeights())).degraded
    both = WeightSet(hints_on=EnsembleWeights(1, 0, 0, 0), hints_off=EnsembleWeights(0, 0, 1, 0), chosen=True)
    engine = KeywordEngine()
    res = Ranker(engine, weights=both).rank(request(use_hints=False))
    assert res.modes == ("listwise",) and not res.degraded
    engine = KeywordEngine()
    assert Ranker(engine, weights=both).rank(request()).modes == ("pointwise",)
    # defaults (no file) serve both settings, as before
    assert Ranker(KeywordEngine()).rank(request(use_hints=False)).modes == MODES


def test_budget_and_shuffles_from_config():
    engine = KeywordEngine()
    Ranker(engine, RankerConfig(pairwise_budget=2, listwise_shuffles=5)).rank(request())
    assert [n for n, _ in engine.calls] == [4 + 4 + 5]


def test_request_validation():
    with pytest.raises(ValueError, match="at least one candidate"):
        RankRequest(USER, [])
    with pytest.raises(ValueError, match="duplicate"):
        RankRequest(USER, [CANDS[0], CANDS[0]])
    with pytest.raises(ValueError, match="modes"):
        RankRequest(USER, list(CANDS), modes=("pointwise", "zeroshot"))
    with pytest.raises(ValueError, match="k must be"):
        RankRequest(USER, list(CANDS), k=0)
    with pytest.raises(ValueError, match="listwise_shuffles"):
        RankerConfig(listwise_shuffles=0)


@pytest.mark.slow
def test_real_model_end_to_end(hf_engine):
    cfg = RankerConfig(pairwise_budget=1, listwise_shuffles=1, history_token_budget=64)
    res = Ranker(hf_engine, cfg).rank(RankRequest(USER, list(CANDS[:3]), k=2))
    assert not res.degraded, res.degraded_reason
    assert len(res.items) == 2 and res.modes == MODES
    assert res.llm_calls >= 1 and res.forward_tokens > 0
    assert all(0.0 < m <= 1.0 for m in res.label_mass.values())
    assert res.items[0].score >= res.items[1].score
