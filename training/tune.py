"""LoRA instruction tuning of the base LLM on an instruction dataset (docs/method.md §1 step 4).

Examples are tokenized exactly as serving tokenizes them (``training.collate``), the
loss covers the answer tokens only, and the base model is the one serving loads
(``ranker.model.prepare_model`` + ``HFEngine``), so the adapter fits what it will run on.

Output folder: a PEFT adapter (adapter_config.json + adapter_model.safetensors, loadable
by peft and by vLLM's ``--lora-modules``), ``train_config.json`` (what was trained, on what),
``metrics.json`` (loss curve, steps, wall time), ``log.jsonl`` (one line per step) and
``checkpoints/`` (adapter + optimizer + scheduler + RNG; ``resume=True`` continues from the
latest). Batches are a pure function of (seed, step), so a resumed run sees the same
examples in the same order, with the same dropout masks, as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ranker.adapter import CONFIG_FILE as ADAPTER_CONFIG
from ranker.types import MODES
from training.collate import BatchPlan, collate, encode_example, end_of_turn_ids, pad_id_of, token_losses
from training.packing import answer_losses, collate_requests, encode_request
from training.requests import FORMAT as REQUEST_FORMAT
from training.data_io import EXAMPLES_FILE, MANIFEST_FILE, file_sha256, read_json, read_jsonl, write_json_atomic

log = logging.getLogger(__name__)

LORA_TARGET_SETS = {  # named module sets for `recranker tune --lora-targets` (vLLM LoRA supports both)
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),  # + the MLP
}
DEFAULT_TARGETS = LORA_TARGET_SETS["attention"]
STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"
# fields that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"resume", "max_steps", "max_minutes", "progress", "checkpoint_every", "keep_checkpoints", "device",
                     "num_threads"}


@dataclass
class TuneConfig:
    dataset_dir: Path  # folder with examples.jsonl + manifest.json (training.instructions.write_dataset)
    output_dir: Path  # the adapter folder written at the end
    model_cache_dir: Path  # where ranker.model.prepare_model keeps converted checkpoints
    base_model: str = "smollm2-135m-instruct"  # bundled name, local checkpoint or HF id
    tasks: tuple[str, ...] = MODES  # train on these tasks of the dataset
    lora_r: int = 8
    lora_alpha: int = 16
    # no dropout by default: on a CPU drawing its masks took a quarter of a training step
    # (bench/profile_training.py), and a run sees each example at most once
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" or "linear" decay after a linear warm-up
    warmup_steps: int = 10  # linear warm-up, capped at a fifth of the planned steps
    batch_size: int = 2  # examples per micro-batch (activation memory: ~2.5 GB per 1k-token example on CPU)
    grad_accum: int = 4  # micro-batches per optimizer step (effective batch = batch_size * grad_accum)
    epochs: float = 1.0  # passes over the data when max_steps is not set
    max_steps: int | None = None  # optimizer steps (overrides epochs)
    max_minutes: float | None = None  # stop (and save) after this much wall time in this run
    max_seq_len: int = 2048  # longer examples (or packed requests) are skipped (counted in metrics.json)
    grad_clip: float = 1.0
    checkpoint_every: int = 50  # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    seed: int = 0
    resume: bool = False  # continue from the latest checkpoint in output_dir/checkpoints
    device: str = "auto"  # "auto", "cpu" or "cuda"
    num_threads: int | None = None  # torch CPU threads (1 avoids thrashing on a busy shared CPU)
    dtype: str | None = None  # base weights: None = bf16 on CUDA, fp32 on CPU
    group_by_length: bool = True  # batch similar lengths together (less padding)
    limit_examples: int | None = None  # train on the first N examples only (smoke runs)
    init_adapter: Path | None = None  # start from this adapter's LoRA weights (same r and targets), not from zero
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes copied into train_config.json

    def __post_init__(self) -> None:
        self.dataset_dir, self.output_dir, self.model_cache_dir = map(Path, (self.dataset_dir, self.output_dir, self.model_cache_dir))
        if self.init_adapter is not None:
            self.init_adapter = Path(self.init_adapter)
        self.tasks, self.target_modules = tuple(self.tasks), tuple(self.target_modules)
        positive = ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_seq_len", "checkpoint_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError("learning_rate and grad_clip must be > 0, weight_decay >= 0")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule must be 'cosine' or 'linear', got {self.schedule!r}")
        if self.warmup_steps < 0 or self.epochs <= 0:
            raise ValueError("warmup_steps must be >= 0 and epochs > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if not self.tasks or any(t not in MODES for t in self.tasks):
            raise ValueError(f"tasks must be a non-empty subset of {MODES}, got {self.tasks!r}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module")

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# ---- schedule, order, checkpoints ---------------------------------------------------------


def lr_lambda(total: int, warmup: int, schedule: str):
    warmup = min(warmup, total // 5)  # a short run must not spend itself warming up

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        frac = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac

    return f


def total_steps(n: int, cfg: TuneConfig) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n / (cfg.batch_size * cfg.grad_accum)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = sorted(p for p in (Path(output_dir) / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def save_checkpoint(model, opt, sched, step: int, state: dict, cfg: TuneConfig) -> Path:
    """Adapter + optimizer + scheduler + RNG into checkpoints/step-NNNNNN (renamed in when complete)."""
    root = cfg.output_dir / CHECKPOINTS
    final, tmp = root / f"step-{step:06d}", root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, tmp, cfg.base_model)
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "rng": rng,
                "config": cfg.to_json(), **state}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step-*"))[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _check_resumable(state: dict, cfg: TuneConfig, data_sha256: str) -> None:
    saved, now = state["config"], cfg.to_json()
    diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
    if diff:
        raise ValueError(f"cannot resume: config differs from the checkpoint's in {', '.join(diff)}")
    if state.get("data_sha256") != data_sha256:
        raise ValueError(f"cannot resume: {cfg.dataset_dir / EXAMPLES_FILE} changed since the checkpoint")


def read_state(path: Path) -> dict:
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)


def load_checkpoint(path: Path, model, opt, sched, cfg: TuneConfig, data_sha256: str) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = read_state(path)
    _check_resumable(state, cfg, data_sha256)
    set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    log.info("resumed from %s (step %d)", path, state["step"])
    return state


# ---- objectives: how examples become batches and losses ---------------------------------------


class AnswerTokens:
    """One instruction example per row, run in full; loss on the answer and end-of-turn tokens."""

    def __init__(self, engine) -> None:
        self.pad_id = pad_id_of(engine.tokenizer)
        self.engine = engine

    def encode(self, row: dict, eot: list[int]):
        return encode_example(self.engine, row, eot)

    @staticmethod
    def length(e) -> int:
        return len(e.input_ids)

    def collate(self, batch: list) -> dict:
        return collate(batch, self.pad_id)

    @staticmethod
    def weight(b: dict) -> float:
        return int((b["labels"] != -100).sum())

    @staticmethod
    def input_tokens(b: dict) -> int:
        return int(b["attention_mask"].sum())

    @staticmethod
    def loss_sum(model, b: dict, device) -> torch.Tensor:
        return token_losses(model, b, device)[0].sum()

    @staticmethod
    def counts(kept: list, rows: list[dict], tasks) -> dict[str, int]:
        return {t: sum(e.task == t for e in kept) for t in tasks}


class PackedRequests:
    """One request per row, its questions packed on one prefix (``training.packing``)."""

    def __init__(self, engine) -> None:
        self.pad_id = pad_id_of(engine.tokenizer)
        self.engine = engine

    def encode(self, row: dict, eot: list[int]):
        return encode_request(self.engine, row)

    @staticmethod
    def length(e) -> int:
        return e.n_tokens

    def collate(self, batch: list) -> dict:
        return collate_requests(batch, self.pad_id)

    @staticmethod
    def weight(b: dict) -> float:
        return float(b["weights"].sum())

    @staticmethod
    def input_tokens(b: dict) -> int:
        return b["n_tokens"]

    def loss_sum(self, model, b: dict, device) -> torch.Tensor:
        # LoRA layers sit inside the base model's modules, so its decoder runs them
        decoder = model.get_base_model().get_decoder()
        losses = answer_losses(decoder, self.engine.vocab_logits, b, device)
        return (losses * b["weights"].to(device)).sum()

    @staticmethod
    def counts(kept: list, rows: list[dict], tasks) -> dict[str, int]:
        return {t: sum(m == t for e in kept for m in e.modes) for t in tasks}


# ---- the run ------------------------------------------------------------------------------


def code_revision(repo: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def is_request_dataset(manifest: dict) -> bool:
    return manifest.get("format") == REQUEST_FORMAT


def load_examples(cfg: TuneConfig) -> tuple[list[dict], dict]:
    manifest = read_json(cfg.dataset_dir / MANIFEST_FILE)
    rows = read_jsonl(cfg.dataset_dir / EXAMPLES_FILE)
    if is_request_dataset(manifest):  # one row = one request; keep the questions of the chosen tasks
        rows = [r | {"questions": [q for q in r["questions"] if q["mode"] in cfg.tasks]} for r in rows]
        rows = [r for r in rows if r["questions"]]
        required = ("system", "shared", "questions")
    else:
        rows = [r for r in rows if r.get("task") in cfg.tasks]
        required = ("system", "shared", "specific", "answer", "labels", "task")
    if cfg.limit_examples is not None:
        rows = rows[: cfg.limit_examples]
    if not rows:
        raise ValueError(f"{cfg.dataset_dir / EXAMPLES_FILE}: no examples for tasks {cfg.tasks}")
    missing = [k for k in required if k not in rows[0]]
    if missing:
        raise ValueError(f"{cfg.dataset_dir / EXAMPLES_FILE}: rows lack field(s) {missing}")
    return rows, manifest


def build_model(engine, cfg: TuneConfig):
    from peft import LoraConfig, get_peft_model

    leaves = [(n.rsplit(".", 1)[-1], type(mod).__name__) for n, mod in engine.model.named_modules()]
    absent = [m for m in cfg.target_modules if m not in {name for name, _ in leaves}]
    if absent:  # other architectures name their projections otherwise (GPT-2: c_attn): say which exist
        layers = sorted({name for name, kind in leaves if kind in ("Linear", "Conv1D") and name != "lm_head"})
        raise ValueError(f"target module(s) {absent} not found in {engine.model_name}; its linear layers: "
                         f"{', '.join(layers)} (--lora-targets takes a comma-separated list of them)")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(cfg.seed)  # LoRA A matrices are initialised randomly
    model = get_peft_model(engine.model, lora)
    if cfg.init_adapter is not None:
        load_initial_adapter(model, cfg)
    return model, lora


def load_initial_adapter(model, cfg: TuneConfig) -> None:
    """Continue an earlier adapter with a fresh optimizer: its LoRA weights replace the
    random start. Its rank and target modules must be this run's (else shapes differ)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = cfg.init_adapter
    config_path, weights_path = folder / ADAPTER_CONFIG, folder / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ValueError(f"--init-adapter {folder}: expected adapter_config.json and adapter_model.safetensors there")
    earlier = read_json(config_path)
    if earlier.get("r") != cfg.lora_r or sorted(earlier.get("target_modules") or []) != sorted(cfg.target_modules):
        raise ValueError(f"--init-adapter {folder}: r={earlier.get('r')} targets={sorted(earlier.get('target_modules') or [])}"
                         f" differ from this run's r={cfg.lora_r} targets={sorted(cfg.target_modules)}")
    result = set_peft_model_state_dict(model, load_file(str(weights_path)))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"--init-adapter {folder}: weights not in this model: {unexpected[:3]}")
    log.info("LoRA weights initialised from %s", folder)


def save_adapter(model, out_dir: Path, base_name: str) -> None:
    """PEFT save into a temporary folder, files then renamed into ``out_dir`` (weights
    first, config last), with the base model recorded by name, not this machine's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out_dir))
    try:
        model.save_pretrained(tmp)
        cfg_path = tmp / ADAPTER_CONFIG
        doc = json.loads(cfg_path.read_text())
        doc["base_model_name_or_path"] = base_name
        cfg_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == ADAPTER_CONFIG):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tune(config: TuneConfig) -> Path:
    """Train a LoRA adapter; returns ``config.output_dir`` (the adapter folder)."""
    cfg = config
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _tune(cfg, t_start)
    finally:
        torch.set_num_threads(threads)


def _tune(cfg: TuneConfig, t_start: float) -> Path:
    from ranker.engines.hf import HFEngine
    from ranker.model import model_info, prepare_model

    rows, manifest = load_examples(cfg)
    data_sha = file_sha256(cfg.dataset_dir / EXAMPLES_FILE)
    ckpt = latest_checkpoint(cfg.output_dir)
    if ckpt is not None and not cfg.resume:
        raise ValueError(f"{cfg.output_dir} holds checkpoints of an earlier run: pass resume=True or use a new folder")
    if ckpt is None and (cfg.output_dir / ADAPTER_CONFIG).is_file():  # e.g. a shipped adapter (no checkpoints)
        raise ValueError(f"{cfg.output_dir} already holds an adapter: tune into a new folder "
                         f"(--init-adapter {cfg.output_dir} starts from it there)")
    if ckpt is not None:
        _check_resumable(read_state(ckpt), cfg, data_sha)  # fail before loading the model
    model_path = prepare_model(cfg.base_model, cfg.model_cache_dir)
    engine = HFEngine(model_path, device=cfg.device, dtype=cfg.dtype)
    eot = end_of_turn_ids(engine)
    objective = PackedRequests(engine) if is_request_dataset(manifest) else AnswerTokens(engine)
    encoded = [objective.encode(r, eot) for r in rows]
    kept = [e for e in encoded if objective.length(e) <= cfg.max_seq_len]
    skipped = len(encoded) - len(kept)
    if not kept:
        raise ValueError(f"every example is longer than max_seq_len={cfg.max_seq_len}")
    if skipped:
        log.warning("skipped %d of %d examples longer than %d tokens", skipped, len(encoded), cfg.max_seq_len)
    model, lora = build_model(engine, cfg)
    device = engine.device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = total_steps(len(kept), cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps, cfg.warmup_steps, cfg.schedule))
    step, history, train_seconds = 0, [], 0.0
    if ckpt is not None:
        st = load_checkpoint(ckpt, model, opt, sched, cfg, data_sha)
        step, history, train_seconds = st["step"], st["history"], st["train_seconds"]
    else:
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
    log_path = cfg.output_dir / "log.jsonl"
    _truncate_log(log_path, step)
    state = {"history": history, "train_seconds": train_seconds, "data_sha256": data_sha}
    stop_reason = _train_loop(model, opt, sched, kept, objective, device, cfg, steps, step, state, log_path)
    step, train_seconds = stop_reason["step"], stop_reason["train_seconds"]
    save_adapter(model, cfg.output_dir, cfg.base_model)
    info = model_info(model_path)
    write_json_atomic(cfg.output_dir / "train_config.json", {
        "config": cfg.to_json(),
        "base_model": {"name": cfg.base_model, **{k: v for k, v in info.items() if k != "path"}},
        "lora": {"r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout,
                 "target_modules": sorted(lora.target_modules)},
        "dataset": {"dir": str(cfg.dataset_dir), "examples_sha256": data_sha, "manifest": manifest},
        "code_revision": code_revision(),
        "end_of_turn_ids": eot,
    })
    counts = objective.counts(kept, rows, cfg.tasks)
    write_json_atomic(cfg.output_dir / "metrics.json", {
        "steps": step, "planned_steps": steps, "stopped": stop_reason["reason"],
        "examples": len(kept), "examples_per_task": counts, "skipped_too_long": skipped,
        "mean_tokens": float(np.mean([objective.length(e) for e in kept])),
        "train_seconds": train_seconds, "seconds_per_step": train_seconds / max(1, step),
        "wall_seconds_this_run": time.perf_counter() - t_start,
        "loss_first": history[0]["loss"] if history else None, "loss_last": history[-1]["loss"] if history else None,
        "loss_curve": [h["loss"] for h in history],
    })
    log.info("adapter written to %s after %d steps (%s)", cfg.output_dir, step, stop_reason["reason"])
    return cfg.output_dir


def _truncate_log(path: Path, step: int) -> None:
    """Keep only log lines of steps already done (a crash may have logged past the checkpoint)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in lines))


def _train_loop(model, opt, sched, data, objective, device, cfg, steps, step, state, log_path) -> dict:
    """Optimizer steps until ``steps`` or the time budget; ``state`` (history, train_seconds,
    data_sha256) goes into every checkpoint."""
    history = state["history"]
    model.train()
    plan = BatchPlan([objective.length(e) for e in data], cfg)
    t0, reason = time.perf_counter(), "max_steps"
    base_seconds = train_seconds = state["train_seconds"]
    # disable=None: a bar on a terminal only (a log gets train_log.jsonl and the log lines)
    bar = tqdm(total=steps, initial=step, desc="lora", disable=None if cfg.progress else True)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as logf:
        while step < steps:
            if cfg.max_minutes is not None and time.perf_counter() - t0 > cfg.max_minutes * 60:
                reason = "max_minutes"
                break
            micro = [objective.collate([data[i] for i in idx]) for idx in plan.step(step)]
            n_tokens = sum(objective.weight(b) for b in micro)
            n_input = sum(objective.input_tokens(b) for b in micro)
            total = 0.0
            for b in micro:
                loss_sum = objective.loss_sum(model, b, device)
                (loss_sum / n_tokens).backward()  # weighted mean over the whole step
                total += loss_sum.item()
            grad_norm = float(torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip))
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            train_seconds = state["train_seconds"] = base_seconds + time.perf_counter() - t0
            rec = {"step": step, "loss": total / n_tokens, "lr": sched.get_last_lr()[0], "grad_norm": grad_norm,
                   "answer_tokens": n_tokens, "tokens": n_input, "seconds": train_seconds}
            history.append(rec)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
            if step % cfg.checkpoint_every == 0 or step == steps:
                save_checkpoint(model, opt, sched, step, state, cfg)
    bar.close()
    if reason == "max_minutes" and step % cfg.checkpoint_every:
        save_checkpoint(model, opt, sched, step, state, cfg)
    return {"step": step, "train_seconds": train_seconds, "reason": reason}
