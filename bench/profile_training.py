"""Where a LoRA training step's time goes: torch's profiler over one request-shaped step.

Builds the model as ``recranker tune`` does (the body in the engine's dtype: ``auto`` is
bf16 where the CPU has bf16 matrix units, float32 elsewhere; float32 LoRA weights; the
engine's packed layout), runs a few training steps (forward + backward) on the first
requests of an instruction dataset, prints tokens per second, then profiles one more step
and prints the operators by self CPU time. Compare settings side by side in one run, e.g.
LoRA dropout on and off, or the body's dtype:

    python -m bench.profile_training --data artifacts/instructions/<requests> --threads 2 \\
        --lora-dropout 0.05 0 --out bench/out/profile_training.json
    python -m bench.profile_training --data ... --lora-dropout 0 --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.report import machine, write_report
from stack.settings import Settings
from training.data_io import EXAMPLES_FILE, read_jsonl
from training.tune import LORA_TARGET_SETS, PackedRequests, TuneConfig, build_model


def measure(data: Path, dropout: float, steps: int, rows_shown: int, settings: Settings, dtype: str = "auto") -> dict:
    from ranker.engines.hf import HFEngine
    from ranker.model import prepare_model

    rows = read_jsonl(data / EXAMPLES_FILE)[: steps + 2]
    cfg = TuneConfig(dataset_dir=data, output_dir=Path("unused"), model_cache_dir=settings.models_dir,
                     target_modules=LORA_TARGET_SETS["all"], lora_dropout=dropout)
    engine = HFEngine(prepare_model(settings.base_model, settings.models_dir), device="cpu", dtype=dtype)
    objective = PackedRequests(engine)
    encoded = [objective.encode(r, []) for r in rows]
    model, _ = build_model(engine, cfg)
    model.train()

    def step(e) -> int:
        b = objective.collate([e])
        objective.loss_sum(model, b, engine.device).backward()
        model.zero_grad(set_to_none=True)
        return b["n_tokens"]

    step(encoded[0])  # warm-up
    seconds, tokens = 0.0, 0
    for e in encoded[1:-1]:
        t = time.perf_counter()
        tokens += step(e)
        seconds += time.perf_counter() - t
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(encoded[-1])
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows_shown)
    top = sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)[:rows_shown]
    total = sum(a.self_cpu_time_total for a in prof.key_averages())
    return {"lora_dropout": dropout, "dtype": str(engine.dtype).removeprefix("torch."), "steps": len(encoded) - 2, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "table": table,
            "top_ops": [{"op": a.key, "share": a.self_cpu_time_total / total} for a in top]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a request dataset folder (recranker instructions requests)")
    ap.add_argument("--lora-dropout", type=float, nargs="+", default=[0.05, 0.0])
    ap.add_argument("--dtypes", nargs="+", default=["auto"], help="the body's dtype(s): auto, float32, bfloat16")
    ap.add_argument("--steps", type=int, default=4, help="timed requests per setting")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--rows", type=int, default=12, help="operators shown")
    ap.add_argument("--out", default="bench/out/profile_training.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings()
    runs = []
    for dropout in args.lora_dropout:
        for dtype in args.dtypes:
            run = measure(Path(args.data), dropout, args.steps, args.rows, settings, dtype)
            print(f"lora dropout {dropout:g}, {run['dtype']} body: {run['tokens_per_s']:.0f} training tokens/s "
                  f"({run['tokens']} tokens in {run['seconds']:.1f} s)\n{run['table']}", flush=True)
            runs.append({k: v for k, v in run.items() if k != "table"})
    if len(runs) > 1:
        base = runs[0]["tokens_per_s"]
        for r in runs[1:]:
            print(f"dropout {r['lora_dropout']:g}, {r['dtype']} / dropout {runs[0]['lora_dropout']:g}, "
                  f"{runs[0]['dtype']}: {r['tokens_per_s'] / base:.2f}x tokens/s")
    write_report(args.out, {"machine": machine(torch_threads=torch.get_num_threads()), "runs": runs})


if __name__ == "__main__":
    main()
