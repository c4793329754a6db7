"""LoRA tuning with the real bundled SmolLM2: a few steps on a handful of short examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ranker import prompts as P
from ranker.chat import to_scoring_prompt
from ranker.engines.hf import HFEngine
from ranker.model import BUNDLED_MODEL
from ranker.types import Candidate, HistoryEntry, Prompt, UserProfile
from training import collate as B
from training import tune as T
from training.data_io import read_jsonl
from training.instructions import write_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def model_cache(model_dir: Path) -> Path:
    """The cache folder holding the session's converted model (tests/conftest.py)."""
    return model_dir.parent


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> HFEngine:
    # its own instance, not the shared hf_engine: a test here wraps the model in a
    # PeftModel and unloads it again, which must not touch what other tests score with
    return HFEngine(model_dir, device="cpu")


def _rows() -> list[dict]:
    """Six short examples, two per task, rendered by the ranker's prompt builders."""
    user = UserProfile("u1", (HistoryEntry("1", "Alien (1979)", 5.0), HistoryEntry("2", "Heat (1995)", 2.0)))
    a, b = Candidate("3", "Aliens (1986)", 0.9), Candidate("4", "Babe (1995)", 0.1)
    cands = [Candidate(str(10 + i), f"Movie {i} (1990)") for i in range(4)]
    prompts = [
        (P.pointwise_prompt(user, a), "5", "pointwise"),
        (P.pointwise_prompt(user, b), "1", "pointwise"),
        (P.pairwise_prompt(user, a, b), "Yes", "pairwise"),
        (P.pairwise_prompt(user, b, a), "No", "pairwise"),
        (P.listwise_prompt(user, cands), "C, A, D, B", "listwise"),
        (P.listwise_prompt(user, cands[::-1]), "B, D, A, C", "listwise"),
    ]
    return [{"task": t, "user_id": "u1", "system": p.system, "shared": p.shared, "specific": p.specific,
             "answer": ans, "labels": list(p.labels)} for p, ans, t in prompts]


@pytest.fixture()
def dataset(tmp_path) -> Path:
    return write_dataset(_rows(), {"format": "test", "seed": 0}, tmp_path / "data")


def _config(dataset: Path, out: Path, cache: Path, **kw) -> T.TuneConfig:
    base = dict(dataset_dir=dataset, output_dir=out, model_cache_dir=cache, device="cpu", batch_size=2,
                grad_accum=1, learning_rate=3e-3, warmup_steps=0, max_seq_len=512, checkpoint_every=2,
                progress=False, seed=0, num_threads=1)
    return T.TuneConfig(**{**base, **kw})


def test_encoding_matches_serving(engine):
    eot = B.end_of_turn_ids(engine)
    assert engine.tokenizer.convert_ids_to_tokens(eot) == ["<|im_end|>"]
    for row in _rows():
        enc = B.encode_example(engine, row, eot)
        prompt = Prompt(row["system"], row["shared"], row["specific"], tuple(row["labels"]))
        prefix, suffix = engine.encode(to_scoring_prompt(engine, prompt))
        n_prompt = len(prefix) + len(suffix)
        assert enc.input_ids[:n_prompt] == prefix + suffix  # the exact ids serving scores
        first_label = row["answer"].split(",")[0]
        assert enc.input_ids[n_prompt] == engine.label_token_ids([first_label])[0]
        assert enc.input_ids[-len(eot):] == eot and enc.n_answer == len(enc.input_ids) - n_prompt


def test_collate_masks_everything_but_answers(engine):
    eot = B.end_of_turn_ids(engine)
    encs = [B.encode_example(engine, r, eot) for r in _rows()[:3]]
    batch = B.collate(encs, B.pad_id_of(engine.tokenizer))
    width = batch["input_ids"].shape[1]
    for r, e in enumerate(encs):
        targets = batch["labels"][r][batch["labels"][r] != -100].tolist()
        assert targets == e.input_ids[-e.n_answer:]
        assert int(batch["attention_mask"][r].sum()) == len(e.input_ids)
        assert batch["position_ids"][r, -1].item() == len(e.input_ids) - 1  # left padding keeps positions
    assert batch["keep"] == max(e.n_answer for e in encs) + 1 and width == max(len(e.input_ids) for e in encs)


def test_tune_lowers_loss_and_adapter_changes_logprobs(engine, dataset, model_cache, tmp_path):
    out = T.tune(_config(dataset, tmp_path / "adapter", model_cache, max_steps=12))
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and set(cfg["target_modules"]) == set(T.DEFAULT_TARGETS)
    assert cfg["base_model_name_or_path"] == BUNDLED_MODEL
    meta = json.loads((out / "train_config.json").read_text())
    assert meta["lora"]["r"] == 8 and meta["dataset"]["manifest"]["seed"] == 0
    assert meta["base_model"]["weights_sha256"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 12 and len(metrics["loss_curve"]) == 12

    from peft import PeftModel

    eot = B.end_of_turn_ids(engine)
    encs = [B.encode_example(engine, r, eot) for r in read_jsonl(dataset / "examples.jsonl")]
    pad = B.pad_id_of(engine.tokenizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in training: a second thread thrashes on a busy 2-core box
    try:
        before = B.example_losses(engine.model, encs, pad, engine.device)
        tuned = PeftModel.from_pretrained(engine.model, str(out))
        try:
            after = B.example_losses(tuned, encs, pad, engine.device)
        finally:
            tuned.unload()  # leave the session's engine as it was
    finally:
        torch.set_num_threads(threads)
    assert after.mean() < 0.5 * before.mean(), (before, after)
    assert np.all(np.abs(after - before) > 1e-3)  # every example's answer log-probs changed


def test_resume_after_interruption_matches_uninterrupted_run(dataset, model_dir, tmp_path, monkeypatch):
    # resuming must reproduce the uninterrupted run for any model: a tiny Llama checks it in seconds
    from tests.tiny_models import tiny_model

    tiny = str(tiny_model("llama", model_dir, tmp_path / "tiny-llama"))
    model_cache = tmp_path / "cache"
    full = T.tune(_config(dataset, tmp_path / "full", model_cache, base_model=tiny, max_steps=4, lora_dropout=0.1))

    calls = {"n": 0}
    real = T.token_losses

    def crash_in_step_three(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # one micro-batch per step: the forward of step 3
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(T, "token_losses", crash_in_step_three)
    cut = _config(dataset, tmp_path / "cut", model_cache, base_model=tiny, max_steps=4, lora_dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        T.tune(cut)
    monkeypatch.setattr(T, "token_losses", real)
    assert T.latest_checkpoint(cut.output_dir).name == "step-000002"
    with pytest.raises(ValueError, match="resume=True"):
        T.tune(cut)  # never silently overwrite an interrupted run
    T.tune(_config(dataset, tmp_path / "cut", model_cache, base_model=tiny, max_steps=4, lora_dropout=0.1, resume=True))

    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["steps"] == 4
    from safetensors.torch import load_file

    a, b = load_file(str(full / "adapter_model.safetensors")), load_file(str(tmp_path / "cut" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="learning_rate"):
        T.tune(_config(dataset, tmp_path / "cut", model_cache, base_model=tiny, max_steps=4, resume=True,
                       lora_dropout=0.1, learning_rate=1e-3))
    examples = dataset / "examples.jsonl"
    examples.write_text(examples.read_text().replace('"answer": "5"', '"answer": "4"'))
    with pytest.raises(ValueError, match="changed since the checkpoint"):
        T.tune(_config(dataset, tmp_path / "cut", model_cache, base_model=tiny, max_steps=6, lora_dropout=0.1,
                       resume=True))


def test_batch_plan_is_a_pure_function_of_step_and_groups_lengths():
    lengths = np.random.default_rng(0).integers(50, 1000, size=200).tolist()
    kw = dict(dataset_dir=".", output_dir=".", model_cache_dir=".", batch_size=4, grad_accum=2, seed=4)
    grouped = B.BatchPlan(lengths, T.TuneConfig(**kw))
    flat = B.BatchPlan(lengths, T.TuneConfig(**kw, group_by_length=False))
    for plan in (grouped, flat):
        seen = [i for s in range(75) for mb in plan.step(s) for i in mb]  # 600 draws = 3 epochs
        for epoch in range(3):
            assert sorted(seen[epoch * 200:(epoch + 1) * 200]) == list(range(200))  # each epoch a permutation
    assert grouped.step(30) == B.BatchPlan(lengths, T.TuneConfig(**kw)).step(30)  # no hidden state

    def padding(plan):
        return sum(len(mb) * max(lengths[i] for i in mb) - sum(lengths[i] for i in mb)
                   for s in range(25) for mb in plan.step(s))

    assert padding(grouped) < 0.3 * padding(flat)


@pytest.mark.parametrize("field,value", [("lora_r", 0), ("schedule", "step"), ("tasks", ("rating",)),
                                         ("max_steps", 0), ("lora_dropout", 1.0)])
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field if field != "tasks" else "tasks"):
        T.TuneConfig(dataset_dir=".", output_dir=".", model_cache_dir=".", **{field: value})


def test_init_adapter_starts_from_its_weights_and_refuses_another_shape(engine, dataset, model_cache, tmp_path):
    import copy
    from types import SimpleNamespace

    def fresh():  # build_model wraps the model it is given: each call gets its own copy
        return SimpleNamespace(model=copy.deepcopy(engine.model), model_name=engine.model_name)

    cfg = _config(dataset, tmp_path / "first", model_cache, lora_r=4)
    first, _ = T.build_model(fresh(), cfg)
    torch.manual_seed(1)
    for name, p in first.named_parameters():
        if "lora_" in name:
            p.data.normal_()  # B starts at zero: make every LoRA weight distinguishable
    T.save_adapter(first, tmp_path / "first", cfg.base_model)
    saved = {n: p.detach().clone() for n, p in first.named_parameters() if "lora_" in n}

    second, _ = T.build_model(fresh(), _config(dataset, tmp_path / "second", model_cache, lora_r=4, seed=7,
                                               init_adapter=tmp_path / "first"))
    loaded = {n: p.detach() for n, p in second.named_parameters() if "lora_" in n}
    assert loaded.keys() == saved.keys()
    for name, value in saved.items():
        torch.testing.assert_close(loaded[name], value)
    assert all(p.requires_grad for n, p in second.named_parameters() if "lora_" in n)  # trains on from there
    with pytest.raises(ValueError, match="r=4"):
        T.build_model(fresh(), _config(dataset, tmp_path / "third", model_cache, lora_r=8,
                                       init_adapter=tmp_path / "first"))
    with pytest.raises(ValueError, match="adapter_config.json"):
        T.build_model(fresh(), _config(dataset, tmp_path / "fourth", model_cache, lora_r=4, init_adapter=tmp_path))


def test_a_folder_holding_an_adapter_is_refused_before_any_work(dataset, tmp_path):
    shipped = tmp_path / "shipped"  # a committed adapter has no checkpoints/ beside it
    shipped.mkdir()
    (shipped / "adapter_config.json").write_text("{}")
    (shipped / "adapter_model.safetensors").write_bytes(b"weights")
    with pytest.raises(ValueError, match="already holds an adapter: tune into a new folder"):
        T.tune(_config(dataset, shipped, tmp_path / "no-model-here", max_steps=1))
    assert (shipped / "adapter_model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in shipped.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not (tmp_path / "no-model-here").exists()  # refused before the model was looked for


def test_another_architecture_tunes_and_serves_its_adapter(dataset, model_dir, tmp_path):
    """RECRANKER_BASE_MODEL may name any causal LM: a Qwen2-shaped model tunes with the default
    targets, and the engine serves what it wrote; GPT-2's projections are named otherwise, and
    the error lists them."""
    from ranker.engines.hf import HFEngine
    from tests.ranker.test_engine_hf import _mixed_prompts
    from tests.tiny_models import tiny_model

    qwen = tiny_model("qwen2", model_dir, tmp_path / "qwen2")
    out = T.tune(_config(dataset, tmp_path / "adapter", tmp_path / "cache", base_model=str(qwen), max_steps=3,
                         learning_rate=1e-2))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and all(np.isfinite(metrics["loss_curve"]))
    base = HFEngine(qwen, device="cpu", dtype="float32")
    tuned = HFEngine(qwen, adapter_path=out, device="cpu", dtype="float32")
    prompts = _mixed_prompts(base)[:3]
    labels = ("Yes", "No")
    assert np.abs(tuned.score(prompts, labels).logprobs - base.score(prompts, labels).logprobs).max() > 1e-3
    gpt2 = tiny_model("gpt2", model_dir, tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"not found in gpt2; its linear layers: c_attn, c_fc, c_proj"):
        T.tune(_config(dataset, tmp_path / "gpt2-adapter", tmp_path / "cache", base_model=str(gpt2), max_steps=1))
