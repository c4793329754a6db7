"""A lever tried and not kept: int8 matrix products (W8A8) in the LLM stage.

CPUs with VNNI (AVX512-VNNI, AMX-INT8) multiply int8 matrices about twice as fast as bf16
ones. This bench swaps every linear layer of the decoder (attention and MLP projections,
the LoRA update already folded in) for one that quantizes its weights per output channel
and its inputs per token, multiplies with ``torch._int_mm`` and rescales; the rest stays as
served. Side by side in one run, on the same service-shaped requests: a large matmul in
bf16 and int8, then per request the served engine (bf16 where the CPU has bf16 units), the
int8 variant and float32: median seconds, and against float32 the largest change of a
mode-normalised label probability and how often the best label is the same.

    python -m bench.bench_int8 --users 8 --threads 2 --out docs/bench/int8.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.bench_packing import compare
from bench.bench_ranker import build_requests, matmul_flops, scoring_prompts, test_user_ids
from bench.report import machine, write_report
from ranker.modes.registry import ALL_LABELS
from stack.build import build_ranker, load_split, resolve_adapter
from stack.settings import Settings


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x int8 per row (symmetric absmax)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-8)
        self.register_buffer("weight_t", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        scale = (rows.abs().amax(1, keepdim=True) / 127).clamp(min=1e-8)
        y = torch._int_mm(torch.round(rows / scale).to(torch.int8), self.weight_t).float()
        y = y.mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y += self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], -1)


def quantize_decoder(decoder: nn.Module) -> int:
    """Swap the decoder layers' linear projections for Int8Linear; returns how many."""
    swapped = 0
    for layer in decoder.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, module in list(parent.named_children()):
                if isinstance(module, nn.Linear):
                    setattr(parent, name, Int8Linear(module))
                    swapped += 1
    return swapped


def matmul_rates(n: int = 2048, repeats: int = 5) -> dict:
    """bf16 and int8 (torch._int_mm, the int8 layers' kernel) rates, the same estimator for both
    (bench_ranker.matmul_flops: median of ``repeats`` after a warm-up)."""
    int8 = matmul_flops(torch.int8, n, repeats, kernel=torch._int_mm)
    return {f"bf16_{n}^3_gops": round(matmul_flops(torch.bfloat16, n, repeats) / 1e9, 1),
            f"int8_{n}^3_gops": round(int8 / 1e9, 1)}


def agreement(variant: list[np.ndarray], reference: list[np.ndarray], modes: list[list[str]]) -> dict:
    """Largest change of a mode-normalised label probability, and same-best-label share, vs
    reference (per prompt, over its own mode's labels: bench_packing.compare)."""
    change = [compare(a, b, m) for a, b, m in zip(variant, reference, modes)]
    return {"max_label_probability_change": round(max(c[0] for c in change), 4),
            "same_best_label": round(sum(c[1] for c in change) / sum(c[2] for c in change), 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/out/int8.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings().model_copy(update={"prefix_cache_mb": 0})  # every request pays its prefix
    split = load_split(settings)
    ids = test_user_ids(split)
    result = {"machine": machine(), "threads": torch.get_num_threads(), "users": args.users,
              "matmul": matmul_rates(), "variants": {}}
    print(result["matmul"], flush=True)
    logprobs = {}
    for variant in ("served", "int8", "float32"):
        s = settings.model_copy(update={"dtype": "float32"}) if variant == "float32" else settings
        ranker = build_ranker(s, resolve_adapter(s))
        engine = ranker.engine
        swapped = quantize_decoder(engine._decoder) if variant == "int8" else 0
        requests = build_requests(split, ids[: args.users + 1], settings.num_candidates)
        prompts, modes = scoring_prompts(ranker, engine, requests)
        modes = modes[1:]  # the first request only warms up
        engine.score(prompts[0], ALL_LABELS)  # warm-up
        seconds, logprobs[variant] = [], []
        for user_prompts in prompts[1:]:
            t = time.perf_counter()
            batch = engine.score(user_prompts, ALL_LABELS)
            seconds.append(time.perf_counter() - t)
            logprobs[variant].append(batch.logprobs)
        result["variants"][variant] = {"dtype": str(engine.dtype).removeprefix("torch."), "int8_layers": swapped,
                                       "median_s": round(float(np.median(seconds)), 3),
                                       "seconds": [round(x, 3) for x in seconds]}
        print(variant, result["variants"][variant], flush=True)
    for variant in ("served", "int8"):
        result["variants"][variant]["vs_float32"] = agreement(logprobs[variant], logprobs["float32"], modes)
    result["served_over_int8_median"] = round(result["variants"]["served"]["median_s"]
                                              / result["variants"]["int8"]["median_s"], 2)
    print(json.dumps({k: result[k] for k in ("served_over_int8_median",)}),
          {v: result["variants"][v].get("vs_float32") for v in ("served", "int8")})
    write_report(args.out, result)


if __name__ == "__main__":
    main()
