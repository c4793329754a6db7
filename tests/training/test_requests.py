"""Request-shaped examples: targets unseen by the backbone that picks the candidates, answers
that follow the target, nothing held out for evaluation anywhere, and packed training that
computes exactly what the engine serves."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from candidate_gen.pop import PopBackbone
from candidate_gen.split import leave_one_out, one_like_earlier
from ranker.chat import to_scoring_prompt
from ranker.prompts import LISTWISE_LABELS
from ranker.types import Prompt
from tests.training.test_instructions import synthetic_dataset
from training.packing import answer_losses, collate_requests, encode_request
from training.requests import RequestExampleConfig, Target, build_request_examples, request_example, targets_of


@pytest.fixture(scope="module")
def split():
    return leave_one_out(synthetic_dataset())


def _shifted_pop(split):
    users, items = one_like_earlier(split).train_interactions()
    return PopBackbone.fit(items, split.dataset.n_items)


class _Loaded:  # what build_request_examples reads of a LoadedBackbone
    def __init__(self, backbone):
        self.backbone, self.meta = backbone, {}


def test_one_like_earlier_holds_out_the_last_training_likes(split):
    shifted = one_like_earlier(split)
    for u, s in split.users.items():
        t = shifted.users[u]
        assert t.events == s.context("valid")  # nothing from the validation like on
        likes = [e.item for e in s.context("valid") if e.liked]
        if len(likes) >= 2:
            assert t.held_out("test") == likes[-1] and t.held_out("valid") == likes[-2]
            assert set(t.train_likes) == set(likes[:-2])  # the shifted backbone never sees the targets


def test_examples_follow_their_target_and_never_show_held_out_items(split):
    loaded = {"pop": _Loaded(_shifted_pop(split))}
    cfg = RequestExampleConfig(pool=40)
    rows = build_request_examples(split, loaded, list(split.users), cfg, seed=0)
    assert rows and Counter(r["hints"] for r in rows).keys() == {True, False}  # hint dropout
    ds = split.dataset
    for row in rows:
        us = split.users[ds.user_ids.index(row["user_id"])]
        held = {ds.item_ids[i] for i in (us.held_out("valid"), us.held_out("test")) if i is not None}
        assert not held & (set(row["items"]) | set(row["history"]))
        assert row["target"] in row["items"] and row["target"] not in row["history"]
        assert len(row["items"]) == cfg.n_candidates == len(set(row["items"]))
        by_mode = Counter(q["mode"] for q in row["questions"])
        assert by_mode == {"pointwise": 10, "pairwise": 2 * cfg.pairwise_pairs, "listwise": cfg.listwise_shuffles}
        target_title = ds.titles[ds.item_ids.index(row["target"])]
        for q in row["questions"]:
            assert q["answer"] in q["labels"]
            if not row["hints"]:
                assert "Hint:" not in q["specific"]
            elif q["mode"] == "listwise":  # a pairwise hint is left out where the backbone ties
                assert "Hint:" in q["specific"]
            if q["mode"] == "pointwise":
                assert (q["answer"] in ("4", "5")) == (f'"{target_title}"' in q["specific"])
            elif q["mode"] == "pairwise":
                first = q["specific"].split('"')[1]
                assert (q["answer"] == "Yes") == (first == target_title)
            else:
                line = next(x for x in q["specific"].splitlines() if x.endswith(target_title))
                assert line.startswith(q["answer"] + ". ") and q["answer"] in LISTWISE_LABELS


def test_a_target_outside_the_pool_is_skipped(split):
    shifted = one_like_earlier(split)
    backbone = _shifted_pop(split)
    rng = np.random.default_rng(0)
    outcomes = [request_example(shifted, backbone, t, RequestExampleConfig(pool=10), rng) for t in targets_of(shifted)]
    assert any(o is None for o in outcomes) and any(o is not None for o in outcomes)
    with pytest.raises(ValueError, match="pool"):
        RequestExampleConfig(pool=5)


@pytest.mark.slow
def test_packed_training_forward_equals_engine_scoring(split, hf_engine):
    loaded = {"pop": _Loaded(_shifted_pop(split))}
    rows = build_request_examples(split, loaded, [0, 1], RequestExampleConfig(pool=40), seed=1,
                                  count_tokens=hf_engine.count_tokens)[:2]
    batch = collate_requests([encode_request(hf_engine, r) for r in rows], pad_id=0)
    with torch.inference_mode():
        losses = answer_losses(hf_engine._decoder, hf_engine.vocab_logits, batch, hf_engine.device).numpy()
    expected = []
    for row in rows:
        for q in row["questions"]:
            sp = to_scoring_prompt(hf_engine, Prompt(row["system"], row["shared"], q["specific"], tuple(q["labels"])))
            expected.append(-hf_engine.score([sp], (q["answer"],)).logprobs[0, 0])
    np.testing.assert_allclose(losses, expected, atol=1e-3)
    # each mode weighs 1 per request
    w = batch["weights"].numpy()
    assert w.sum() == pytest.approx(3 * len(rows))


def test_targets_are_two_per_user_with_enough_likes(split):
    shifted = one_like_earlier(split)
    targets = targets_of(shifted)
    per_user = Counter(t.user for t in targets)
    assert set(per_user.values()) <= {1, 2}
    assert all(isinstance(t, Target) and shifted.users[t.user].events[t.position].liked for t in targets)
