"""HFEngine against the real SmolLM2 on CPU: labels, prefix-cache scoring, adapters."""

from __future__ import annotations

import copy
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from ranker.engines.base import LabelError, ScoringPrompt
from ranker.engines.hf import HFEngine
from ranker.model import ModelError

SPLIT = "\u2063SPLIT\u2063"
LABEL_SETS = [tuple("12345"), ("Yes", "No"), tuple("ABCDEFGHIJKLMNOPQRST")]


def _prompt(engine: HFEngine, system: str, shared: str, specific: str) -> ScoringPrompt:
    prefix, suffix = engine.chat_template(system, shared + SPLIT + specific).split(SPLIT)
    return ScoringPrompt(prefix, suffix)


def _mixed_prompts(engine: HFEngine) -> list[ScoringPrompt]:
    history = "The user watched and liked: " + ", ".join(f"Movie number {i}" for i in range(12)) + ".\n"
    titles = ["Heat (1995)", "Toy Story (1995)", "The Good, the Bad and the Ugly, extended director's cut (1966)",
              "Fargo", "Star Wars: Episode IV - A New Hope (1977), remastered special edition"]
    shared = [_prompt(engine, "You rank movies.", history, f"Would the user enjoy {t}? Answer Yes or No.")
              for t in titles]
    other = _prompt(engine, "You are terse.", "We talk about cats.\n", "Do cats purr? Answer Yes or No.")
    return shared[:3] + [other] + shared[3:]  # two prefixes interleaved in one call


def _reference(engine: HFEngine, prompt: ScoringPrompt, labels) -> np.ndarray:
    """Plain unbatched, uncached forward through the library: the ground truth."""
    prefix, suffix = engine.encode(prompt)
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([prefix + suffix])).logits[0, -1]
    return torch.log_softmax(logits.float(), -1)[engine.label_token_ids(labels)].numpy()


@pytest.mark.slow
def test_rating_choice_and_letter_labels_are_single_tokens(hf_engine: HFEngine) -> None:
    for labels in LABEL_SETS:
        ids = hf_engine.label_token_ids(labels)
        assert len(set(ids)) == len(labels)
        ctx = hf_engine.chat_template("s", "u")
        for label, tid in zip(labels, ids):
            assert hf_engine.tokenizer.decode([tid]) == label
            assert hf_engine.count_tokens(ctx + label) == hf_engine.count_tokens(ctx) + 1


@pytest.mark.slow
def test_multi_token_label_raises_label_error(hf_engine: HFEngine) -> None:
    with pytest.raises(LabelError, match="Star Wars"):
        hf_engine.label_token_ids(["Yes", "Star Wars"])
    with pytest.raises(LabelError):
        hf_engine.score([_mixed_prompts(hf_engine)[0]], ["Yes", ""])


@pytest.mark.slow
def test_prefix_reuse_matches_full_prompts_and_reference(hf_engine: HFEngine, monkeypatch) -> None:
    prompts = _mixed_prompts(hf_engine)
    labels = ("Yes", "No")
    reused = hf_engine.score(prompts, labels, reuse_prefix=True)
    full = hf_engine.score(prompts, labels, reuse_prefix=False)
    ref = np.stack([_reference(hf_engine, p, labels) for p in prompts])
    assert reused.logprobs.shape == (len(prompts), 2)
    assert np.all(reused.logprobs < 0)
    np.testing.assert_allclose(reused.logprobs, full.logprobs, atol=1e-3)
    np.testing.assert_allclose(full.logprobs, ref, atol=1e-3)  # padding changes nothing
    encoded = [hf_engine.encode(p) for p in prompts]
    assert full.forward_tokens == sum(len(a) + len(b) for a, b in encoded)
    assert reused.forward_tokens == sum(len(b) for _, b in encoded) + sum(map(len, {tuple(a) for a, _ in encoded}))
    assert (reused.calls, full.calls) == (2, 1)  # both prefixes in one pass, both packs in one; one full batch
    # One suffix per row: six rows over two padded prefixes of different lengths.
    monkeypatch.setattr(hf_engine, "pack_tokens", 1)
    rows = hf_engine.score(prompts, labels, reuse_prefix=True)
    assert rows.calls == 2
    np.testing.assert_allclose(rows.logprobs, reused.logprobs, atol=1e-4)
    # A token budget too small to batch anything: every prefix and every row its own pass,
    # so each prefix's cache serves several passes and must come out of each unchanged.
    monkeypatch.setattr(hf_engine, "max_batch_tokens", 1)
    alone = hf_engine.score(prompts, labels, reuse_prefix=True)
    assert alone.calls == 2 + len(prompts)
    assert alone.forward_tokens == reused.forward_tokens  # padding is not counted as work
    np.testing.assert_allclose(alone.logprobs, reused.logprobs, atol=1e-4)


@pytest.mark.slow
def test_batch_equals_one_at_a_time_and_threads_agree(hf_engine: HFEngine) -> None:
    prompts = _mixed_prompts(hf_engine)[2:5]  # both prefixes
    labels = tuple("12345")
    batch = hf_engine.score(prompts, labels).logprobs
    single = np.concatenate([hf_engine.score([p], labels).logprobs for p in prompts])
    np.testing.assert_allclose(batch, single, atol=1e-4)
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, hf_engine.score(prompts, labels).logprobs))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results.values():
        np.testing.assert_allclose(r, batch, atol=1e-4)


@pytest.mark.slow
def test_encode_empty_input_and_generate(hf_engine: HFEngine) -> None:
    p = _mixed_prompts(hf_engine)[0]
    prefix, suffix = hf_engine.encode(p)
    assert len(prefix) == hf_engine.count_tokens(p.prefix) and len(suffix) == hf_engine.count_tokens(p.suffix)
    empty = hf_engine.score([], ("Yes", "No"))
    assert empty.logprobs.shape == (0, 2) and empty.calls == 0
    with pytest.raises(ValueError, match="suffix is empty"):
        hf_engine.score([ScoringPrompt(p.prefix, "")], ("Yes", "No"))
    text = hf_engine.generate(p.prefix + p.suffix, max_new_tokens=4)
    assert isinstance(text, str) and text.strip()


@pytest.mark.slow
def test_lora_adapter_loads_and_changes_scores(hf_engine: HFEngine, model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(hf_engine.model),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "tiny-lora"
    peft_model.save_pretrained(adapter)
    del peft_model
    tuned = HFEngine(model_dir, adapter_path=adapter, device="cpu", dtype="float32")
    assert tuned.adapter_name == "tiny-lora"
    assert re.fullmatch(r"[0-9a-f]{16}", tuned.adapter_revision)
    prompts = _mixed_prompts(hf_engine)[:4]
    labels = ("Yes", "No")
    base = hf_engine.score(prompts, labels).logprobs
    reused = tuned.score(prompts, labels, reuse_prefix=True).logprobs
    assert np.abs(reused - base).max() > 1e-2
    ref = np.stack([_reference(tuned, p, labels) for p in prompts[:2]])  # through the merged model
    np.testing.assert_allclose(reused[:2], ref, atol=1e-3)
    # merged (the default: W + BA folded in at load) and kept apart score alike in float32
    apart = HFEngine(model_dir, adapter_path=adapter, device="cpu", dtype="float32", merge_adapter=False)
    assert (tuned.info["adapter_merged"], apart.info["adapter_merged"]) == (True, False)
    from ranker.engines.hf import bf16_units, cpu_flags

    assert tuned.info["bf16_units"] == bf16_units(cpu_flags())  # recorded beside validation verdicts
    np.testing.assert_allclose(apart.score(prompts, labels).logprobs, reused, atol=1e-4)
    with pytest.raises(ModelError, match="adapter_config.json"):
        HFEngine(model_dir, adapter_path=tmp_path, device="cpu")
