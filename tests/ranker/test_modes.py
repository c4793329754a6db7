import math

import numpy as np
import pytest

from ranker.chat import to_scoring_prompt
from ranker.modes import listwise, pairwise, pointwise
from ranker.modes.base import ScoringError, backbone_order, label_probs, request_seed
from ranker.prompts import LISTWISE_LABELS, PromptConfig, catalogue_identifiers, listwise_prompt
from ranker.types import Candidate, HistoryEntry, UserProfile

USER = UserProfile(
    "u7",
    (
        HistoryEntry("1", "Star Wars (1977)", 5),
        HistoryEntry("2", "Jaws (1975)", 2),
        HistoryEntry("3", "Fargo (1996)", 4),
    ),
)
CANDS = [
    Candidate("10", "Toy Story (1995)", 0.9),
    Candidate("11", "Heat (1995)", 0.7),
    Candidate("12", "Casino (1995)", 0.4),
    Candidate("13", "Babe (1995)", None),
]


def cands(n: int) -> list[Candidate]:
    return [Candidate(f"i{k:02d}", f"Title {k}", float(n - k)) for k in range(n)]


def score(engine, plan):
    batch = engine.score([to_scoring_prompt(engine, p) for p in plan.prompts], plan.labels)
    return batch.logprobs


# ---- pure: label arithmetic -------------------------------------------------------------------


def test_label_probs_renormalise_and_mass():
    probs, mass = label_probs(np.log([[0.1, 0.3], [0.5, 0.5]]))
    np.testing.assert_allclose(probs, [[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(mass, [0.4, 1.0])


def test_label_probs_reject_garbage():
    with pytest.raises(ScoringError, match="NaN"):
        label_probs(np.array([[np.nan, -1.0]]))
    with pytest.raises(ScoringError, match="every label"):
        label_probs(np.array([[-np.inf, -np.inf]]))
    with pytest.raises(ScoringError, match="2-d"):
        label_probs(np.array([-1.0, -2.0]))


def test_pointwise_expected_rating_known_answer():
    plan = pointwise.plan(USER, CANDS[:2], hints=False)
    rows = np.log([[0.05, 0.05, 0.05, 0.3, 0.05], [0.25, 0.0625, 0.0625, 0.0625, 0.0625]])
    out = pointwise.collect(plan, rows)
    # first: (1+2+3)*0.1 + 4*0.6 + 5*0.1 = 3.5; second: 1*0.5 + (2+3+4+5)*0.125 = 2.25
    assert out.scores == pytest.approx({"10": 3.5, "11": 2.25})
    assert out.label_mass == pytest.approx((0.5 + 0.5) / 2)


def test_pairwise_preference_averages_both_orders():
    assert pairwise.preference(0.8, 0.4) == pytest.approx(0.7)  # (0.8 + (1 - 0.4)) / 2
    assert pairwise.preference(0.4, 0.8) == pytest.approx(1 - 0.7)


def test_pairwise_collect_reads_adjacent_rows_as_both_orders():
    plan = pairwise.plan(USER, CANDS[:2], budget=1, hints=False)
    assert plan.keys == [("10", "11"), ("11", "10")]
    rows = np.log([[0.9, 0.1], [0.3, 0.7]])  # P_yes(a,b)=0.9, P_yes(b,a)=0.3 -> P(a over b)=0.8
    outcomes, _ = pairwise.pair_preferences(plan, rows)
    assert outcomes == [("10", "11", pytest.approx(0.8))]
    scores = pairwise.collect(plan, rows).scores
    assert scores["10"] > 0.5 > scores["11"]
    assert scores["10"] + scores["11"] == pytest.approx(1.0)  # symmetric pair, symmetric fit


def test_bradley_terry_chain_gives_global_order_and_neutral_unplayed():
    s = pairwise.bradley_terry(["a", "b", "c", "d"], [("a", "b", 0.7), ("b", "c", 0.7)])
    assert s["a"] > s["b"] > s["c"]
    assert s["b"] == pytest.approx(0.5, abs=1e-6)
    assert s["d"] == pytest.approx(0.5, abs=1e-9)
    certain = pairwise.bradley_terry(["a", "b"], [("a", "b", 1.0)] * 50)
    assert all(math.isfinite(v) for v in certain.values()) and certain["a"] > 0.9


# ---- pure: pair selection and shuffles --------------------------------------------------------


def test_select_pairs_adjacent_first_then_seeded_random_within_budget():
    cs = cands(6)
    order = backbone_order(cs)
    adjacent = list(zip(order, order[1:]))
    assert pairwise.select_pairs(cs, 3, seed=1) == adjacent[:3]
    pairs = pairwise.select_pairs(cs, 8, seed=1)
    assert pairs[:5] == adjacent and len(pairs) == 8
    assert len({frozenset(p) for p in pairs}) == 8
    assert pairs == pairwise.select_pairs(cs, 8, seed=1)
    assert len(pairwise.select_pairs(cs, 100, seed=1)) == 15  # all 6*5/2 pairs, no more
    assert pairwise.select_pairs(cs, 0, seed=1) == []
    with pytest.raises(ValueError, match="budget"):
        pairwise.select_pairs(cs, -1, seed=1)


def test_backbone_order_puts_unscored_last():
    assert backbone_order(CANDS) == [0, 1, 2, 3]
    assert backbone_order(CANDS[::-1]) == [3, 2, 1, 0]  # reversed input: item "13" (None) is index 0


def test_request_seed_ignores_candidate_order_but_not_content():
    assert request_seed(0, "u", CANDS, "x") == request_seed(0, "u", CANDS[::-1], "x")
    assert request_seed(0, "u", CANDS, "x") != request_seed(0, "v", CANDS, "x")
    assert request_seed(0, "u", CANDS, "x") != request_seed(1, "u", CANDS, "x")


def test_listwise_shown_orders_independent_of_input_order():
    def shown_ids(cs):
        return [[[cs[i].item_id for i in w] for w in windows] for windows in listwise.shown_orders(cs, 3, seed=5)]

    cs = cands(10)
    assert shown_ids(cs) == shown_ids(cs[::-1]) == shown_ids(cs[3:] + cs[:3])


def test_listwise_rotations_spread_positions():
    cs = cands(9)
    orders = [w[0] for w in listwise.shown_orders(cs, 3, seed=0)]
    for item in range(9):
        positions = sorted(order.index(item) for order in orders)
        assert len(set(positions)) == 3  # a different position in every shuffle
        assert positions[-1] - positions[0] >= 6  # spread across the list, not clustered


def test_listwise_windows_for_many_candidates():
    cs = cands(45)
    for windows in listwise.shown_orders(cs, 2, seed=0):
        assert [len(w) for w in windows] == [15, 15, 15]
        assert sorted(i for w in windows for i in w) == list(range(45))
    plan = listwise.plan(USER, cs, shuffles=2)
    assert len(plan.prompts) == 6
    rows = np.log(np.full((6, len(LISTWISE_LABELS)), 1 / 40))
    out = listwise.collect(plan, rows)
    assert sum(out.scores.values()) == pytest.approx(1.0)  # every shuffle hands out a total of 1
    assert out.scores["i00"] == pytest.approx(1 / 45)
    assert out.label_mass == pytest.approx(15 / 40)


def test_listwise_collect_known_answer():
    plan = listwise.plan(USER, CANDS[:3], shuffles=2, hints=False)
    # give the identifier of item "12" probability 0.5 in every prompt, the rest 0.25 each
    rows = np.full((len(plan.prompts), len(LISTWISE_LABELS)), np.log(1e-6))
    for r, shown in enumerate(plan.keys):
        for col, item in enumerate(shown):
            rows[r, col] = np.log(0.5 if item == "12" else 0.25)
    out = listwise.collect(plan, rows)
    assert out.scores["12"] == pytest.approx(0.5, abs=1e-5)
    assert out.scores["10"] == pytest.approx(0.25, abs=1e-5)


def test_plans_have_expected_prompt_counts():
    assert len(pointwise.plan(USER, CANDS).prompts) == 4
    assert len(pairwise.plan(USER, CANDS, budget=4).prompts) == 8
    assert len(pairwise.plan(USER, CANDS[:1], budget=4).prompts) == 0
    assert len(listwise.plan(USER, CANDS, shuffles=3).prompts) == 3


# ---- the real SmolLM2 --------------------------------------------------------------------------


@pytest.mark.slow
def test_pairwise_both_order_averaging_is_symmetric(hf_engine):
    # two requests that pick the same pair with the roles swapped (the backbone order flips)
    flipped = [Candidate("10", CANDS[0].title, 0.1), Candidate("11", CANDS[1].title, 0.8)]
    ab = pairwise.plan(USER, CANDS[:2], budget=1, hints=False)
    ba = pairwise.plan(USER, flipped, budget=1, hints=False)
    assert ab.keys[0] == ("10", "11") and ba.keys[0] == ("11", "10")
    [(_, _, p_ab)], _ = pairwise.pair_preferences(ab, score(hf_engine, ab))
    [(_, _, p_ba)], _ = pairwise.pair_preferences(ba, score(hf_engine, ba))
    assert p_ab == pytest.approx(1.0 - p_ba, abs=1e-4)
    assert 0.0 < p_ab < 1.0


@pytest.mark.slow
def test_listwise_invariant_to_input_order_but_model_has_position_bias(hf_engine):
    cs = CANDS[:3]
    perm = [cs[2], cs[0], cs[1]]
    one = listwise.plan(USER, cs, shuffles=3)
    two = listwise.plan(USER, perm, shuffles=3)
    assert [p.specific for p in one.prompts] == [p.specific for p in two.prompts]
    # one engine call for both plans plus two fixed orders (the unshuffled way to do it)
    naive = [listwise_prompt(USER, cs), listwise_prompt(USER, cs[::-1])]
    lp = hf_engine.score(
        [to_scoring_prompt(hf_engine, p) for p in one.prompts + two.prompts + naive], LISTWISE_LABELS
    ).logprobs
    s1 = listwise.collect(one, lp[:3]).scores
    s2 = listwise.collect(two, lp[3:6]).scores
    for item in s1:
        assert s1[item] == pytest.approx(s2[item], abs=1e-4)
    # the model does care about position: showing the same list reversed changes its answer
    fwd, _ = label_probs(lp[6:7], 3)
    rev, _ = label_probs(lp[7:8], 3)
    naive_fwd = dict(zip([c.item_id for c in cs], fwd[0]))
    naive_rev = dict(zip([c.item_id for c in cs[::-1]], rev[0]))
    assert max(abs(naive_fwd[i] - naive_rev[i]) for i in naive_fwd) > 1e-3


@pytest.mark.slow
def test_pointwise_expected_rating_in_range(hf_engine):
    plan = pointwise.plan(USER, CANDS, count_tokens=hf_engine.count_tokens)
    out = pointwise.collect(plan, score(hf_engine, plan))
    assert set(out.scores) == {c.item_id for c in CANDS}
    assert all(1.0 <= v <= 5.0 for v in out.scores.values())
    assert 0.0 < out.label_mass <= 1.0


# ---- the catalogue layout ----------------------------------------------------------------------

CATALOGUE = PromptConfig(layout="catalogue")


def test_catalogue_plans_share_one_prefix_and_ask_by_letter():
    c = cands(10)
    plans = [pointwise.plan(USER, c, config=CATALOGUE), pairwise.plan(USER, c, budget=5, config=CATALOGUE),
             listwise.plan(USER, c, shuffles=3, config=CATALOGUE)]
    assert [len(p.prompts) for p in plans] == [10, 10, 3]  # as many questions as the inline layout
    prompts = [q for p in plans for q in p.prompts]
    assert len({q.shared for q in prompts}) == 1 and "Hint:" in prompts[0].shared
    assert not any("Hint" in q.specific or "Title" in q.specific for q in prompts)
    orders = {q.specific for q in plans[2].prompts}
    assert len(orders) == 3  # position shifting: each listwise question reads the letters in another order


def test_catalogue_listwise_collect_reads_letters_whatever_the_order_shown():
    c = cands(6)
    plan = listwise.plan(USER, c, shuffles=3, hints=False, config=CATALOGUE)
    letter = catalogue_identifiers(c)["i02"]
    rows = np.full((len(plan.prompts), len(LISTWISE_LABELS)), np.log(1e-6))
    rows[:, :6] = np.log(0.1)
    rows[:, LISTWISE_LABELS.index(letter)] = np.log(0.5)  # the same letter in every shifted order
    out = listwise.collect(plan, rows)
    assert max(out.scores, key=out.scores.get) == "i02"
    assert out.scores["i02"] == pytest.approx(0.5, abs=1e-4)
