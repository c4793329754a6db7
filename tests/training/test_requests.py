"""Request-shaped examples: targets unseen by the backbone that picks the candidates, answers
that follow the target, nothing held out for evaluation anywhere, and packed training that
computes exactly what the engine serves."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch

from candidate_gen.pop import PopBackbone
from candidate_gen.split import leave_one_out, one_like_earlier
from ranker.chat import to_scoring_prompt
from ranker.engines.hf import HFEngine
from ranker.prompts import LISTWISE_LABELS
from ranker.types import Prompt
from tests.tiny_models import tiny_model
from tests.training.test_instructions import synthetic_dataset
from training.packing import answer_losses, collate_requests, encode_request
from training.requests import RequestExampleConfig, Target, build_request_examples, request_example, targets_of


@pytest.fixture(scope="module")
def split():
    return leave_one_out(synthetic_dataset())


@pytest.fixture(scope="module")
def tiny_llama(model_dir, tmp_path_factory) -> HFEngine:
    """A 2-layer Llama with the bundled tokenizer: packing must equal one sequence for any
    weights, and this checks it without a 135M-parameter backward (tests/tiny_models.py)."""
    return HFEngine(tiny_model("llama", model_dir, tmp_path_factory.mktemp("tiny-llama")), device="cpu",
                    dtype="float32")


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


def test_examples_with_genres_show_each_items_genres_as_served():
    from dataclasses import asdict

    from ranker.prompts import PromptConfig

    ds = synthetic_dataset()
    ds.genres = [(f"Genre{i % 3}",) for i in range(ds.n_items)]
    genred = leave_one_out(ds)
    cfg = RequestExampleConfig(pool=40, prompt=PromptConfig(genres=True))
    rows = build_request_examples(genred, {"pop": _Loaded(_shifted_pop(genred))}, list(genred.users), cfg, seed=0)
    assert rows
    for row in rows:
        pointwise = [q["specific"] for q in row["questions"] if q["mode"] == "pointwise"]
        assert len(pointwise) == len(row["items"])  # one per candidate, in candidate order
        for text, item_id in zip(pointwise, row["items"]):
            assert f"(Genre{ds.item_index[item_id] % 3}) 1-5." in text
        listwise = [q for q in row["questions"] if q["mode"] == "listwise"]
        shown = [line for q in listwise for line in q["specific"].splitlines()[1:] if line[1:3] == ". "]
        assert len(shown) == len(listwise) * len(row["items"])
        assert all(re.search(r" \(Genre[012]\)$", line) for line in shown)
        assert all("(Genre" in line for line in row["shared"].splitlines()[1:] if line.startswith('"'))
    assert asdict(cfg)["prompt"]["genres"] is True  # what the manifest, then train_config.json, records


def test_catalogue_examples_answer_by_the_targets_letter(split):
    from dataclasses import asdict

    from ranker.prompts import PromptConfig

    cfg = RequestExampleConfig(pool=40, prompt=PromptConfig(layout="catalogue"))
    rows = build_request_examples(split, {"pop": _Loaded(_shifted_pop(split))}, list(split.users), cfg, seed=0)
    assert rows and {r["hints"] for r in rows} == {True, False}
    ds = split.dataset
    for row in rows:
        letters = dict(re.findall(r"^([A-T])\. (.+)$", row["shared"], flags=re.M))
        assert sorted(letters.values()) == sorted(ds.titles[ds.item_index[i]] for i in row["items"])
        target = next(k for k, title in letters.items() if title == ds.titles[ds.item_index[row["target"]]])
        assert ("Hint:" in row["shared"]) == row["hints"]
        for q in row["questions"]:
            assert "Hint" not in q["specific"] and not any(t in q["specific"] for t in letters.values())
            if q["mode"] == "pointwise":
                assert (q["answer"] in ("4", "5")) == (q["specific"] == f"Rate {target} 1-5.")
            elif q["mode"] == "pairwise":
                assert (q["answer"] == "Yes") == q["specific"].startswith(f"Prefer {target} over ")
            else:
                assert q["answer"] == target and q["labels"] == list(LISTWISE_LABELS[:len(row["items"])])
    assert asdict(cfg)["prompt"]["layout"] == "catalogue"  # what the manifest, then train_config.json, records


def test_hint_dropout_one_renders_the_same_requests_without_any_hint(split):
    from ranker.prompts import PromptConfig

    prompt = PromptConfig(layout="catalogue")
    loaded = {"pop": _Loaded(_shifted_pop(split))}
    half = build_request_examples(split, loaded, list(split.users), RequestExampleConfig(pool=40, prompt=prompt), seed=0)
    none = build_request_examples(split, loaded, list(split.users),
                                  RequestExampleConfig(pool=40, prompt=prompt, hint_dropout=1.0), seed=0)
    assert len(none) == len(half) and not any(r["hints"] for r in none) and any(r["hints"] for r in half)
    for a, b in zip(half, none):
        assert (a["items"], a["target"], [q["answer"] for q in a["questions"]]) == \
            (b["items"], b["target"], [q["answer"] for q in b["questions"]])
        assert "Hint:" not in b["shared"]
        if not a["hints"]:
            assert a == b  # a request that had no hint is unchanged


def test_a_target_outside_the_pool_is_skipped(split):
    shifted = one_like_earlier(split)
    backbone = _shifted_pop(split)
    rng = np.random.default_rng(0)
    outcomes = [request_example(shifted, backbone, t, RequestExampleConfig(pool=10), rng) for t in targets_of(shifted)]
    assert any(o is None for o in outcomes) and any(o is not None for o in outcomes)
    with pytest.raises(ValueError, match="pool"):
        RequestExampleConfig(pool=5)
    # a pool of exactly the request's size: the candidates are the backbone's own top 10, whatever the draw
    for t in targets_of(shifted):
        a = request_example(shifted, backbone, t, RequestExampleConfig(pool=10), np.random.default_rng(1))
        b = request_example(shifted, backbone, t, RequestExampleConfig(pool=10), np.random.default_rng(2))
        assert (a is None) == (b is None)
        if a is not None:
            assert sorted(a["items"]) == sorted(b["items"]) and len(a["items"]) == 10


def test_examples_from_data_without_new_items_never_mention_them():
    from candidate_gen.data import without_items
    from training.new_items import hold_out_items

    full = synthetic_dataset()
    held = hold_out_items(full.n_items, 0.2, seed=0)
    cut = leave_one_out(without_items(full, held, "new-items"))
    rows = build_request_examples(cut, {"pop": _Loaded(_shifted_pop(cut))}, list(cut.users),
                                  RequestExampleConfig(pool=40), seed=0)
    held_ids = {full.item_ids[i] for i in held}
    assert rows and held_ids
    assert not any(held_ids & (set(r["items"]) | set(r["history"])) for r in rows)
    # the same build on the full data does show them: the check above can fail
    full_split = leave_one_out(full)
    rows_full = build_request_examples(full_split, {"pop": _Loaded(_shifted_pop(full_split))},
                                       list(full_split.users), RequestExampleConfig(pool=40), seed=0)
    assert any(held_ids & (set(r["items"]) | set(r["history"])) for r in rows_full)


@pytest.mark.slow
def test_packed_training_forward_equals_engine_scoring(split, tiny_llama):
    loaded = {"pop": _Loaded(_shifted_pop(split))}
    rows = build_request_examples(split, loaded, [0, 1], RequestExampleConfig(pool=40), seed=1,
                                  count_tokens=tiny_llama.count_tokens)[:2]
    rows = [_fewer_questions(r, per_mode=3) for r in rows]
    batch = collate_requests([encode_request(tiny_llama, r) for r in rows], pad_id=0)
    with torch.inference_mode():
        losses = answer_losses(tiny_llama._decoder, tiny_llama.vocab_logits, batch, tiny_llama.device).numpy()
    expected = []
    for row in rows:
        for q in row["questions"]:
            sp = to_scoring_prompt(tiny_llama, Prompt(row["system"], row["shared"], q["specific"], tuple(q["labels"])))
            expected.append(-tiny_llama.score([sp], (q["answer"],)).logprobs[0, 0])
    np.testing.assert_allclose(losses, expected, atol=1e-3)
    # each mode weighs 1 per request
    w = batch["weights"].numpy()
    assert w.sum() == pytest.approx(3 * len(rows))


def _fewer_questions(row: dict, per_mode: int) -> dict:
    """The row with its first ``per_mode`` questions of each mode: every mode and several
    packs are still covered, at a fraction of the float32 forward and backward cost (the
    full request took minutes on CPUs without bf16 units)."""
    seen: Counter = Counter()
    kept = []
    for q in row["questions"]:
        seen[q["mode"]] += 1
        if seen[q["mode"]] <= per_mode:
            kept.append(q)
    assert {q["mode"] for q in kept} == {"pointwise", "pairwise", "listwise"}
    return row | {"questions": kept}


def _one_sequence_losses(decoder, vocab_logits, requests, pad_id=0):
    """Reference: each request as ONE sequence [prefix | suffix 1 | suffix 2 ...] with a
    block-causal mask (the layout training used before packs), losses in question order."""
    width = max(r.n_tokens for r in requests)
    ids = torch.full((len(requests), width), pad_id)
    pos = torch.zeros((len(requests), width), dtype=torch.long)
    mask = torch.zeros((len(requests), 1, width, width), dtype=torch.bool)
    mask[:, 0, :, 0] = True
    rows, cols, answers = [], [], []
    for b, r in enumerate(requests):
        n = len(r.prefix)
        ids[b, :n], pos[b, :n] = torch.tensor(r.prefix), torch.arange(n)
        mask[b, 0, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
        start = n
        for suffix, answer in zip(r.suffixes, r.answers):
            m = len(suffix)
            ids[b, start:start + m], pos[b, start:start + m] = torch.tensor(suffix), torch.arange(n, n + m)
            mask[b, 0, start:start + m, :n] = True
            mask[b, 0, start:start + m, start:start + m] = torch.ones(m, m, dtype=torch.bool).tril()
            rows.append(b)
            cols.append(start + m - 1)
            answers.append(answer)
            start += m
    hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
    logits = vocab_logits(hidden[torch.tensor(rows), torch.tensor(cols)])
    return torch.nn.functional.cross_entropy(logits, torch.tensor(answers), reduction="none")


@pytest.mark.slow
def test_packed_rows_give_the_one_sequence_losses_and_gradients(split, tiny_llama):
    import copy

    from peft import LoraConfig, get_peft_model

    loaded = {"pop": _Loaded(_shifted_pop(split))}
    rows = build_request_examples(split, loaded, [0, 1], RequestExampleConfig(pool=40), seed=2,
                                  count_tokens=tiny_llama.count_tokens)[:2]
    requests = [encode_request(tiny_llama, _fewer_questions(r, per_mode=2)) for r in rows]
    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(tiny_llama.model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                      lora_dropout=0.0, init_lora_weights=False))
    decoder = model.get_base_model().get_decoder()
    lora = [p for p in model.parameters() if p.requires_grad]

    def losses_and_grads(fn):
        model.zero_grad()
        losses = fn()
        losses.sum().backward()
        return losses.detach(), [p.grad.clone() for p in lora]

    batch = collate_requests(requests, pad_id=0, pack_tokens=64)  # several packs per request
    assert len(batch["slots"]) > 2 * len(requests)
    packed, packed_grads = losses_and_grads(lambda: answer_losses(decoder, tiny_llama.vocab_logits, batch, "cpu"))
    ref, ref_grads = losses_and_grads(lambda: _one_sequence_losses(decoder, tiny_llama.vocab_logits, requests))
    np.testing.assert_allclose(packed.numpy(), ref.numpy(), atol=1e-4)  # per question, in request order
    for g, h in zip(packed_grads, ref_grads):
        np.testing.assert_allclose(g.numpy(), h.numpy(), atol=2e-4 * max(1.0, float(h.abs().max())))


def test_targets_are_two_per_user_with_enough_likes(split):
    shifted = one_like_earlier(split)
    targets = targets_of(shifted)
    per_user = Counter(t.user for t in targets)
    assert set(per_user.values()) <= {1, 2}
    assert all(isinstance(t, Target) and shifted.users[t.user].events[t.position].liked for t in targets)
