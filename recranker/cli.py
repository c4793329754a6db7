"""`recranker` command line: the contract users and later work rely on.

Every command reads defaults from Settings (RECRANKER_* env vars); flags override.
Errors are one readable line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from pydantic import ValidationError

from recranker.settings import Settings, adapter_or_none, describe_settings_error

log = logging.getLogger("recranker")

BACKBONES = ("pop", "mf", "lightgcn", "sasrec")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _load_split(settings: Settings, dataset: str | None, dataset_path: str | None):
    from candidate_gen.download import load_dataset
    from candidate_gen.split import leave_one_out

    name = dataset_path or dataset or settings.dataset
    ds = load_dataset(name, settings.resolved_data_dir, url=settings.ml100k_url)
    return leave_one_out(ds)


def _write_json(path: str | None, payload: dict) -> None:
    text = json.dumps(payload, indent=2)
    if path is None or path == "-":
        print(text)
        return
    from training.data_io import write_text_atomic

    out = write_text_atomic(Path(path), text + "\n")
    print(f"wrote {out}")


def cmd_data_prepare(args, settings: Settings) -> None:
    split = _load_split(settings, args.dataset, args.dataset_path)
    for key, value in split.counts().items():
        print(f"{key:>18}: {value:,}")


def cmd_backbone_train(args, settings: Settings) -> None:
    from candidate_gen.artifacts import backbone_dir, save_backbone
    from candidate_gen.evaluate import evaluate_backbone
    from candidate_gen.train import train_backbone

    split = _load_split(settings, args.dataset, args.dataset_path)
    backbone, metrics = train_backbone(split, args.model, seed=args.seed)
    folder = backbone_dir(settings.home, split.dataset.name, args.model)
    test = evaluate_backbone(backbone, split, stage="test")
    save_backbone(backbone, folder, {**metrics, "test": test, "dataset": split.dataset.name,
                                     "fingerprint": split.dataset.fingerprint, "seed": args.seed},
                  item_ids=split.dataset.item_ids, user_ids=split.dataset.user_ids)
    print(f"saved {args.model} backbone to {folder}")
    print(json.dumps(test["metrics"], indent=2))


def cmd_backbone_evaluate(args, settings: Settings) -> None:
    from candidate_gen.artifacts import ensure_backbone
    from candidate_gen.evaluate import evaluate_backbone

    split = _load_split(settings, args.dataset, args.dataset_path)
    loaded = ensure_backbone(settings.home, split, args.model, seed=args.seed)
    result = evaluate_backbone(loaded.backbone, split, stage="test")
    _write_json(args.json, {"dataset": split.dataset.name, "model": args.model,
                            "users": result["users"], "metrics": result["metrics"]})


def cmd_model_prepare(args, settings: Settings) -> None:
    from ranker.model import prepare_model

    path = prepare_model(args.model or settings.base_model, settings.models_dir)
    print(f"model ready at {path}")


def _adapter_arg(value: str | None, settings: Settings) -> str | None:
    return settings.adapter if value is None else adapter_or_none(value)


def _ranker_and_generator(args, settings: Settings):
    from candidate_gen.artifacts import ensure_backbone
    from candidate_gen.retrieve import CandidateGenerator
    from recranker.stack import build_ranker

    split = _load_split(settings, args.dataset, args.dataset_path)
    loaded = ensure_backbone(settings.home, split, args.backbone, seed=args.seed)
    generator = CandidateGenerator.from_backbone(loaded.backbone, "exact")
    adapter = _adapter_arg(args.adapter, settings)
    ranker = build_ranker(settings, adapter)
    return split, loaded, generator, ranker, adapter


def cmd_evaluate(args, settings: Settings) -> None:
    from training.evaluate import EvalConfig, cache_key, collect, report
    from training.report import bar_chart, markdown_table

    split, loaded, generator, ranker, adapter = _ranker_and_generator(args, settings)
    out: dict = {"dataset": split.dataset.name, "backbone": args.backbone, "adapter": adapter,
                 "model": ranker.engine.model_name, "ranker": asdict(ranker.config), "weights": ranker.weights.to_dict()}
    hint_settings = {"on": [True], "off": [False], "both": [True, False]}[args.hints]
    md = []
    for hints in hint_settings:
        config = EvalConfig(stage=args.stage, num_candidates=args.candidates, use_hints=hints,
                            users=args.users, seed=args.seed)
        cache = settings.home / "eval-cache" / f"{cache_key(config, ranker, loaded.meta)}.jsonl"
        outcomes = collect(split, generator, ranker, config, cache_path=cache)
        result = report(outcomes, ranker.weights, seed=args.seed)
        key = "with_hints" if hints else "without_hints"
        out[key] = result
        title = f"{split.dataset.name}, {args.backbone} candidates, adapter={adapter or 'none'}, hints={'on' if hints else 'off'}, {result['users']} users"
        md.append(markdown_table(result["rows"], title))
        md.append(markdown_table(result["rows_target_in_candidates"],
                                 f"subset whose test item is a candidate ({result['users_with_target_in_candidates']} users)"))
        if args.chart:
            bar_chart(result["rows"], Path(args.chart).with_stem(Path(args.chart).stem + f"-{key}"), title)
    first = out["with_hints" if hint_settings[0] else "without_hints"]
    out["users"] = first["users"]
    out["rows"] = first["rows"]
    _write_json(args.json, out)
    print("\n".join(md))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(md))


def cmd_weights(args, settings: Settings) -> None:
    from training.evaluate import EvalConfig, cache_key, collect
    from training.weights import choose_weights, save_weights

    split, loaded, generator, ranker, adapter = _ranker_and_generator(args, settings)
    if adapter is None:
        raise CLIError("choosing weights needs an adapter folder to write hybrid_weights.json into (--adapter)")
    config = EvalConfig(stage="valid", num_candidates=args.candidates, use_hints=True, users=args.users, seed=args.seed)
    cache = settings.home / "eval-cache" / f"{cache_key(config, ranker, loaded.meta)}.jsonl"
    outcomes = collect(split, generator, ranker, config, cache_path=cache)
    best, table = choose_weights(outcomes)
    path = save_weights(best, Path(adapter), {"stage": "valid", "users": len(outcomes),
                                              "users_with_target_in_candidates": sum(o.target_is_candidate for o in outcomes),
                                              "metric": "NDCG@3", "seed": args.seed, "top": table[:10]})
    print(f"chose {best.to_dict()} on {len(outcomes)} validation users; wrote {path}")


def cmd_instructions_build(args, settings: Settings) -> None:
    from transformers import AutoTokenizer

    from candidate_gen.artifacts import ensure_backbone
    from ranker.engines.tokens import encode_text
    from ranker.model import prepare_model
    from recranker.stack import ranker_config
    from training.instructions import InstructionConfig, build_instructions, dataset_manifest, write_dataset
    from training.sampling import SamplingConfig, sample_users, save_sampled

    split = _load_split(settings, args.dataset, args.dataset_path)
    loaded = ensure_backbone(settings.home, split, args.backbone, seed=args.seed)
    sampled = sample_users(split, SamplingConfig(method=args.sampling, budget=args.budget), seed=args.seed,
                           backbone=loaded.backbone, backbone_user_ids=loaded.user_ids)
    out = Path(args.out or settings.home / "instructions" / f"{split.dataset.name}-{args.backbone}-{args.sampling}-{args.budget}")
    out.mkdir(parents=True, exist_ok=True)
    save_sampled(sampled, split, out / "sampled_users.json")
    # the serving tokenizer and prompt settings cut histories exactly as serving does; no weights needed
    tokenizer = AutoTokenizer.from_pretrained(str(prepare_model(settings.base_model, settings.models_dir)))
    config = InstructionConfig(hints=not args.no_hints, prompt=ranker_config(settings).prompt_config)
    rows = build_instructions(split, loaded, sampled, config, seed=args.seed,
                              count_tokens=lambda text: len(encode_text(tokenizer, text)))
    manifest = dataset_manifest(rows, split, loaded, sampled, config, args.seed)
    write_dataset(rows, manifest, out)
    print(f"wrote {len(rows)} examples {manifest['counts']} from {sampled.n_unique} users to {out}")


def cmd_tune(args, settings: Settings) -> None:
    from training.tune import TuneConfig, tune

    cfg = TuneConfig(dataset_dir=Path(args.data), output_dir=Path(args.out), model_cache_dir=settings.models_dir,
                     base_model=settings.base_model, max_steps=args.max_steps, max_minutes=args.max_minutes,
                     epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
                     learning_rate=args.lr, lora_r=args.lora_r, seed=args.seed, resume=args.resume,
                     num_threads=args.threads, limit_examples=args.limit_examples, device=settings.device)
    path = tune(cfg)
    print(f"adapter written to {path}")


def cmd_model_card(args, settings: Settings) -> None:
    from training.card import write_card

    path = write_card(Path(args.adapter), Path(args.eval) if args.eval else None, args.command_line)
    print(f"wrote {path}")


def cmd_serve(args, settings: Settings) -> None:
    from service.cli import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    serve(settings.model_copy(update=overrides))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recranker", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(sp):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--dataset", help="dataset name (default: RECRANKER_DATASET, ml-100k)")
        g.add_argument("--dataset-path", help="folder with interactions.csv and items.csv")

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    sp = data.add_parser("prepare", help="load (download if absent), split, print counts")
    data_args(sp)
    sp.set_defaults(func=cmd_data_prepare)

    bb = sub.add_parser("backbone", help="conventional recommenders").add_subparsers(dest="action", required=True)
    for name, func, helptext in (("train", cmd_backbone_train, "train and save a backbone"),
                                 ("evaluate", cmd_backbone_evaluate, "HR/NDCG@3,5,10 on all test users")):
        sp = bb.add_parser(name, help=helptext)
        data_args(sp)
        sp.add_argument("--model", choices=BACKBONES, required=True)
        sp.add_argument("--seed", type=int, default=0)
        if name == "evaluate":
            sp.add_argument("--json", help="write the result here (default: stdout)")
        sp.set_defaults(func=func)

    model = sub.add_parser("model", help="the base LLM").add_subparsers(dest="action", required=True)
    sp = model.add_parser("prepare", help="put the base model into the cache as a plain HF checkpoint")
    sp.add_argument("--model", help="bundled name, HF id or local path (default: RECRANKER_BASE_MODEL)")
    sp.set_defaults(func=cmd_model_prepare)
    sp = model.add_parser("card", help="write an adapter's model card (README.md + loss.png)")
    sp.add_argument("--adapter", required=True)
    sp.add_argument("--eval", help="JSON written by `recranker evaluate`")
    sp.add_argument("--command-line", required=True, help="the command that trained it, quoted in the card")
    sp.set_defaults(func=cmd_model_card)

    ins = sub.add_parser("instructions", help="instruction data").add_subparsers(dest="action", required=True)
    sp = ins.add_parser("build", help="sample users, build the three-task instruction dataset (JSONL + manifest)")
    data_args(sp)
    sp.add_argument("--backbone", choices=BACKBONES, default="lightgcn", help="hints and hard negatives (train split only)")
    sp.add_argument("--sampling", choices=("adaptive", "uniform", "importance", "clustering"), default="adaptive")
    sp.add_argument("--budget", type=int, default=1000, help="user draws N (each yields up to one example per task)")
    sp.add_argument("--no-hints", action="store_true", help="build prompts without backbone hints")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", help="output folder (default: <home>/instructions/<name>)")
    sp.set_defaults(func=cmd_instructions_build)

    sp = sub.add_parser("tune", help="LoRA instruction tuning -> a PEFT adapter folder")
    sp.add_argument("--data", required=True, help="instruction dataset folder (examples.jsonl + manifest.json)")
    sp.add_argument("--out", required=True, help="adapter output folder")
    sp.add_argument("--max-steps", type=int, help="optimizer steps (default: one epoch)")
    sp.add_argument("--max-minutes", type=float, help="stop and save after this much wall time")
    sp.add_argument("--epochs", type=float, default=1.0)
    sp.add_argument("--batch-size", type=int, default=2)
    sp.add_argument("--grad-accum", type=int, default=4)
    sp.add_argument("--lr", type=float, default=2e-4)
    sp.add_argument("--lora-r", type=int, default=8)
    sp.add_argument("--threads", type=int, help="torch CPU threads")
    sp.add_argument("--limit-examples", type=int, help="train on the first N examples (smoke runs)")
    sp.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_tune)

    def eval_args(sp):
        data_args(sp)
        sp.add_argument("--backbone", choices=BACKBONES, default="lightgcn")
        sp.add_argument("--adapter", help="PEFT adapter folder, or 'none' for the base model (default: RECRANKER_ADAPTER)")
        sp.add_argument("--users", type=int, help="evaluate a seeded random subset of users")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--candidates", type=int, default=10, help="backbone candidates per user")

    sp = sub.add_parser("evaluate", help="the paper's protocol: backbone vs each mode vs hybrid, HR/NDCG@3,5")
    eval_args(sp)
    sp.add_argument("--stage", choices=("test", "valid"), default="test")
    sp.add_argument("--hints", choices=("on", "off", "both"), default="both")
    sp.add_argument("--json", required=True, help="write the result here")
    sp.add_argument("--markdown", help="also write the tables here")
    sp.add_argument("--chart", help="also write PNG charts (one per hint setting) with this name")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("weights", help="choose hybrid weights on validation users, save beside the adapter")
    eval_args(sp)
    sp.set_defaults(func=cmd_weights)

    sp = sub.add_parser("serve", help="run the ranking service")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from service.cli import configure_logging  # light: settings and pydantic only

    configure_logging(args.verbose)
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"recranker: error: {describe_settings_error(e)}", file=sys.stderr)
        return 2
    try:
        args.func(args, settings)
    except KeyboardInterrupt:
        print("recranker: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's contract is one readable line
        if args.verbose:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"recranker: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
