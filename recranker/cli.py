"""`recranker` command line: the contract users and later work rely on.

Every command reads defaults from Settings (RECRANKER_* env vars); flags override.
Errors are one readable line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from recranker.settings import Settings

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
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(out)
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
                                     "fingerprint": split.dataset.fingerprint, "seed": args.seed})
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

    sp = sub.add_parser("serve", help="run the ranking service")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
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
