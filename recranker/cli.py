"""`recranker` command line: the contract users and later work rely on.

Every command reads defaults from Settings (RECRANKER_* env vars); flags override.
Errors are one readable line on stderr and a non-zero exit code. This module only parses
arguments, calls into training.pipeline / stack / service, and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from candidate_gen.base import BACKBONE_NAMES as BACKBONES
from candidate_gen.recency_choice import describe_recency
from ranker.prompts import INLINE, LAYOUTS
from stack.settings import Settings, describe_settings_error
from training import pipeline
from training.pipeline import DataChoice

log = logging.getLogger("recranker")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _write_json(path: str | None, payload: dict) -> None:
    text = json.dumps(payload, indent=2)
    if path is None or path == "-":
        print(text)
        return
    from training.data_io import write_text_atomic

    out = write_text_atomic(Path(path), text + "\n")
    print(f"wrote {out}")


def _num_candidates(args, settings: Settings) -> int:
    return settings.num_candidates if args.candidates is None else args.candidates


def _data(args) -> DataChoice:
    return DataChoice(args.dataset, args.dataset_path)


def cmd_data_prepare(args, settings: Settings) -> None:
    from stack.build import load_split

    split = load_split(settings, args.dataset, args.dataset_path)
    for key, value in split.counts().items():
        print(f"{key:>18}: {value:,}")


def cmd_backbone_train(args, settings: Settings) -> None:
    folder, test, recency = pipeline.train_backbone_artifact(settings, _data(args), args.model, args.seed)
    print(f"saved {args.model} backbone to {folder}")
    print(json.dumps(test["metrics"], indent=2))
    print(f"recency re-ordering of its candidates: {describe_recency(recency)}")


def cmd_backbone_evaluate(args, settings: Settings) -> None:
    _write_json(args.json, pipeline.evaluate_backbone_artifact(settings, _data(args), args.model, args.seed))


def cmd_model_prepare(args, settings: Settings) -> None:
    from ranker.model import prepare_model

    path = prepare_model(args.model or settings.base_model, settings.models_dir)
    if isinstance(path, Path):
        print(f"model ready at {path}")
    else:  # a hub id: nothing fetched here, so say what happens instead of claiming it is ready
        print(f"model {path} is a Hugging Face hub id: transformers downloads it into its cache at first load "
              "(the hub, or the mirror HF_ENDPOINT names, must be reachable then; HF_HUB_OFFLINE=1 uses the cache "
              "only); for a machine without the hub, download it elsewhere and set RECRANKER_BASE_MODEL to its folder")


def cmd_evaluate(args, settings: Settings) -> None:
    run = pipeline.evaluate_llm(settings, _data(args), backbone=args.backbone, adapter=args.adapter,
                                users=args.users, seed=args.seed, num_candidates=_num_candidates(args, settings),
                                stage=args.stage, hints=args.hints)
    if args.chart:
        from training.report import bar_chart

        for rows, suffix, title in run.charts:
            bar_chart(rows, Path(args.chart).with_stem(Path(args.chart).stem + f"-{suffix}"), title)
    _write_json(args.json, run.result)
    print("\n".join(run.tables))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(run.tables))


def cmd_new_items(args, settings: Settings) -> None:
    if not 0.0 < args.share < 1.0:
        raise CLIError(f"--share must be between 0 and 1 (exclusive), got {args.share}")
    try:
        run = pipeline.evaluate_new_items(settings, _data(args), adapter=args.adapter, share=args.share,
                                          seed=args.seed, num_candidates=_num_candidates(args, settings),
                                          stage=args.stage, users=args.users,
                                          outcomes_path=Path(args.outcomes) if args.outcomes else None)
    except pipeline.PipelineError as e:
        raise CLIError(str(e)) from None
    _write_json(args.json, run.result)
    print("\n".join(run.tables))


def cmd_weights(args, settings: Settings) -> None:
    try:
        run = pipeline.choose_hybrid_weights(
            settings, _data(args), backbone=args.backbone, adapter=args.adapter, users=args.users,
            seed=args.seed, num_candidates=_num_candidates(args, settings), hints=args.hints,
            fusion=args.fusion, test_gap=args.test_gap, objective=args.objective)
    except pipeline.PipelineError as e:
        raise CLIError(str(e)) from None
    for key, d in run["details"].items():
        if not isinstance(d, dict):
            continue
        if "test_gap" in d:
            g = d["test_gap"]
            print(f"{key}: those weights on {g['users']} test users: {g['diff']:+.4f} [{g['ci'][0]:+.4f}, "
                  f"{g['ci'][1]:+.4f}]; validation-to-test gap {g['gap_in_sample']:+.4f} (in sample), "
                  f"{g['gap_cross_validated']:+.4f} (cross-validated)")
        if "fusion" in d:
            f = d["fusion"]
            v = f["validation_cross_validated"]
            line = (f"{key}: logistic fusion (not served), validation out of fold {v['diff']:+.4f} "
                    f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]")
            if f["test"]:
                t = f["test"]
                line += f"; test {t['diff']:+.4f} [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}], gap {f['validation_to_test_gap']:+.4f}"
            print(line)
    for key, ev in run["weights"].get("evidence", {}).items():
        if "diff" in ev:
            cv = ev["cross_validated"]
            print(f"{key}: best LLM weights {ev['best_llm_weights']} on {ev['users']} validation users: "
                  f"{ev['metric']} hybrid - backbone {ev['diff']:+.4f} [{ev['ci'][0]:+.4f}, {ev['ci'][1]:+.4f}] "
                  f"(cross-validated {cv['diff']:+.4f} [{cv['ci'][0]:+.4f}, {cv['ci'][1]:+.4f}])")
    print(f"serving: {run['describe']}")
    print(f"wrote {run['path']}")


def cmd_instructions_build(args, settings: Settings) -> None:
    out, n_rows, counts, n_users = pipeline.build_instruction_dataset(
        settings, _data(args), backbone=args.backbone, sampling=args.sampling, budget=args.budget,
        hints=not args.no_hints, seed=args.seed, out=args.out)
    print(f"wrote {n_rows} examples {counts} from {n_users} users to {out}")


def cmd_instructions_requests(args, settings: Settings) -> None:
    backbones = tuple(b.strip() for b in args.backbones.split(",") if b.strip())
    bad = [b for b in backbones if b not in BACKBONES]
    if not backbones or bad:
        raise CLIError(f"--backbones takes a comma-separated list of {', '.join(BACKBONES)}; got {args.backbones!r}")
    if args.without_new_items is not None and not 0.0 < args.without_new_items < 1.0:
        raise CLIError(f"--without-new-items must be between 0 and 1 (exclusive), got {args.without_new_items}")
    new_items = None if args.without_new_items is None else (args.without_new_items, args.new_items_seed)
    out, info = pipeline.build_request_dataset(settings, _data(args), backbones=backbones, sampling=args.sampling,
                                               budget=args.budget, seed=args.seed, out=args.out, new_items=new_items,
                                               genres=args.genres, pool=args.pool, layout=args.layout,
                                               hint_dropout=args.hint_dropout)
    print(f"wrote {info['n_examples']} requests ({info['n_questions']} questions, {info['per_backbone']}) "
          f"from {info['sampling']['n_unique']} users to {out}")


def _lora_targets(spec: str) -> tuple[str, ...]:
    """'attention', 'all' (attention + MLP) or a comma-separated list of module names."""
    from training.tune import LORA_TARGET_SETS

    if spec in LORA_TARGET_SETS:
        return LORA_TARGET_SETS[spec]
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if not names:
        raise CLIError(f"--lora-targets takes 'attention', 'all' or module names like q_proj,v_proj; got {spec!r}")
    return names


def _tasks(spec: str) -> tuple[str, ...]:
    """A comma-separated subset of the three modes."""
    from ranker.types import MODES

    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    bad = [n for n in names if n not in MODES]
    if not names or bad:
        raise CLIError(f"--tasks takes a comma-separated subset of {','.join(MODES)}; got {spec!r}")
    return names


def cmd_tune(args, settings: Settings) -> None:
    from training.tune import TuneConfig, tune

    cfg = TuneConfig(dataset_dir=Path(args.data), output_dir=Path(args.out), model_cache_dir=settings.models_dir,
                     base_model=settings.base_model, max_steps=args.max_steps, max_minutes=args.max_minutes,
                     epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
                     learning_rate=args.lr, lora_r=args.lora_r, lora_alpha=args.lora_alpha or 2 * args.lora_r,
                     lora_dropout=args.lora_dropout,
                     target_modules=_lora_targets(args.lora_targets), seed=args.seed, resume=args.resume,
                     num_threads=args.threads, limit_examples=args.limit_examples, device=settings.device,
                     init_adapter=Path(args.init_adapter) if args.init_adapter else None,
                     tasks=_tasks(args.tasks))
    path = tune(cfg)
    print(f"adapter written to {path}")


def cmd_model_card(args, settings: Settings) -> None:
    from training.card import write_card

    path = write_card(Path(args.adapter), Path(args.eval) if args.eval else None, args.command_line)
    print(f"wrote {path}")


def cmd_serve(args, settings: Settings) -> None:
    from service.server import serve

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
    sp.add_argument("--out", help="output folder (default: <home>/instructions/<name with every non-default "
                                   "choice>); a folder holding examples built with other choices is refused")
    sp.set_defaults(func=cmd_instructions_build)
    sp = ins.add_parser("requests", help="request-shaped examples (all three tasks per request; what the "
                                         "shipped adapter is tuned on), candidates from backbones trained "
                                         "one like earlier")
    data_args(sp)
    sp.add_argument("--backbones", default="lightgcn,sasrec", help="comma-separated backbones for candidates and hints")
    sp.add_argument("--sampling", choices=("adaptive", "uniform", "importance", "clustering"), default="adaptive")
    sp.add_argument("--budget", type=int, default=5000, help="user draws N (the method's budget for ML-100K)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", help="output folder (default: <home>/instructions/<name with every non-default "
                                   "choice>); a folder holding examples built with other choices is refused")
    sp.add_argument("--without-new-items", type=float, metavar="SHARE",
                    help="leave out the items `recranker new-items --share SHARE` treats as new (a clean "
                         "cold-start adapter: no backbone or example mentions them)")
    sp.add_argument("--new-items-seed", type=int, default=0, help="the new-items draw's seed (default 0)")
    sp.add_argument("--genres", action="store_true",
                    help="show each item's genres after its title (an adapter tuned on these examples is "
                         "served with genres too: its train_config.json records the layout)")
    sp.add_argument("--pool", type=int,
                    help="negatives from the backbone's top-POOL unseen items; a target ranked below is skipped "
                         "(default 30; 10: exactly the top 10 a request is served)")
    sp.add_argument("--layout", choices=LAYOUTS, default=INLINE,
                    help="prompt layout: 'inline' names candidates by title in every question; 'catalogue' lists "
                         "them once in the shared part and asks by letter (fewer tokens per request; an adapter "
                         "tuned on it is served with it: its train_config.json records the layout)")
    sp.add_argument("--hint-dropout", type=float, metavar="SHARE",
                    help="share of requests rendered without the backbone's hints (default 0.5; 1: none, so no "
                         "answer can be copied from the backbone's order; the same requests otherwise)")
    sp.set_defaults(func=cmd_instructions_requests)

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
    sp.add_argument("--lora-alpha", type=int, help="LoRA scale numerator (default: 2 x --lora-r)")
    sp.add_argument("--lora-dropout", type=float, default=0.0,
                    help="dropout on the LoRA input (default 0: its masks cost a quarter of a CPU step)")
    sp.add_argument("--lora-targets", default="attention",
                    help="modules with LoRA: 'attention' (q,k,v,o; default), 'all' (attention + MLP) or a list")
    sp.add_argument("--tasks", default="pointwise,pairwise,listwise",
                    help="train on these modes' questions only (comma-separated; default all three)")
    sp.add_argument("--threads", type=int, help="torch CPU threads")
    sp.add_argument("--limit-examples", type=int, help="train on the first N examples (smoke runs)")
    sp.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    sp.add_argument("--init-adapter", help="start from this adapter's LoRA weights (continued training, fresh optimizer)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_tune)

    def eval_args(sp):
        data_args(sp)
        sp.add_argument("--backbone", choices=BACKBONES, default="lightgcn")
        sp.add_argument("--adapter", help="PEFT adapter folder, or 'none' for the base model (default: RECRANKER_ADAPTER)")
        sp.add_argument("--users", type=int, help="evaluate a seeded random subset of users")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--candidates", type=int, help="backbone candidates per user (default: RECRANKER_NUM_CANDIDATES, 10)")

    sp = sub.add_parser("evaluate", help="the paper's protocol: backbone vs each mode vs hybrid, HR/NDCG@3,5")
    eval_args(sp)
    sp.add_argument("--stage", choices=("test", "valid"), default="test")
    sp.add_argument("--hints", choices=("on", "off", "both"), default="on",
                    help="backbone hints in the prompts: on (default), off, or both (two evaluations)")
    sp.add_argument("--json", required=True, help="write the result here")
    sp.add_argument("--markdown", help="also write the tables here")
    sp.add_argument("--chart", help="also write PNG charts (one per hint setting) with this name")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("new-items", help="the LLM on items no backbone has a score for, vs a random order (paired)")
    data_args(sp)
    sp.add_argument("--adapter", help="PEFT adapter folder, or 'none' for the base model (default: RECRANKER_ADAPTER)")
    sp.add_argument("--share", type=float, default=0.2, help="share of the catalogue treated as new (default 0.2)")
    sp.add_argument("--stage", choices=("test", "valid"), default="test")
    sp.add_argument("--users", type=int, help="evaluate a seeded random subset of the eligible users")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--candidates", type=int, help="new items per user, the held-out one included (default 10)")
    sp.add_argument("--json", required=True, help="write the result here")
    sp.add_argument("--outcomes", help="also write each user's outcome here (JSON lines) for a per-user "
                                       "comparison of two adapters: python -m bench.compare_runs A B")
    sp.set_defaults(func=cmd_new_items)

    sp = sub.add_parser("weights", help="choose hybrid weights on validation users, save beside the adapter")
    eval_args(sp)
    sp.add_argument("--hints", choices=("on", "off", "both"), default="both",
                    help="hint settings to choose weights for (default both; on or off alone keeps the "
                         "file's weights for the other)")
    sp.add_argument("--fusion", choices=("grid", "logistic"), default="grid",
                    help="logistic: also fit a learned fusion (per-mode z, backbone z and rank) with 5-fold "
                         "cross-validation and record it beside the weights (not served)")
    sp.add_argument("--test-gap", action="store_true",
                    help="after choosing, score the choice on test users too (the validation-to-test gap; "
                         "reuses `recranker evaluate`'s cached test outcomes)")
    sp.add_argument("--objective", default=None,
                    help="metric the grid point is chosen by, HR@k or NDCG@k (default NDCG@3; NDCG@10 over 10 "
                         "candidates counts every rank); the serving verdict is always on NDCG@3")
    sp.set_defaults(func=cmd_weights)

    sp = sub.add_parser("serve", help="run the ranking service")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from service.server import configure_logging  # light: settings and pydantic only

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
