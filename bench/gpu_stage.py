"""Stage a GPU measurement for a machine that has torch + CUDA but no network and a small
upload limit (this team's lent GPU: 64 MiB per call, the ~30 MiB working tree included; no
model hub).

What travels: the staged folder (model config + tokenizer, ML-100K files, trained backbones
and, with ``--with-gguf``, the bundled model's GGUF: 98 MB, checksum pinned in
``ranker.model``) and the wheels the GPU image lacks, tarred into one bundle and cut into
parts that go one per call while the machine stays warm (an ignored path that a later call
does not name in carry stays there); the last call joins and checks them. There the GGUF
becomes a checkpoint exactly as ``recranker model prepare`` makes one (``real-weights``), or,
without it, seeded random weights in the SmolLM2-135M architecture (``random-weights``:
throughput does not depend on weight values, but scores from such a run mean nothing).

    python -m bench.gpu_stage stage --model-dir <converted checkpoint> --data <ml-100k> \
        --home <RECRANKER_HOME with backbones/> --with-gguf --to .gpu          # here
    tar -cf /tmp/gpu-bundle.tar .gpu .whl
    python -m bench.gpu_stage split /tmp/gpu-bundle.tar --to .gpu-parts      # here
    python -m bench.gpu_stage join .gpu-parts /tmp/gpu-bundle.tar            # there
    python -m bench.gpu_stage real-weights .gpu/gguf/<name>.gguf .gpu/model /tmp/model  # there

bench/gpu_run.sh runs the last two steps and the measurements.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from common.checksum import sha256_file

MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja", "special_tokens_map.json")
DATA_FILES = ("u.data", "u.item")
MANIFEST = "manifest.json"
PART_MIB = 32  # the working tree (~30 MiB) travels with every call, under 64 MiB in all


def stage(model_dir: Path, data: Path, home: Path | None, to: Path, with_gguf: bool = False) -> None:
    """Copy what travels: model config + tokenizer (no weights), the ML-100K files the
    loader reads, trained backbones (so the service does not retrain them there) and, with
    ``with_gguf``, the installed wheel's GGUF (the real weights, in ``to/gguf/``)."""
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
    if with_gguf:
        from ranker.model import locate_bundled_gguf

        gguf = locate_bundled_gguf()
        (to / "gguf").mkdir(parents=True, exist_ok=True)
        shutil.copy2(gguf, to / "gguf" / gguf.name)


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


def split_file(src: Path, to: Path, part_mib: int = PART_MIB) -> dict:
    """Cut ``src`` into parts of at most ``part_mib`` MiB, each in its own folder
    (``to/part-0/``, ``to/part-1/``, ...: one call carries one folder), with a manifest
    (name, size and sha256 of the whole and of every part) in ``to``, carried with each."""
    if part_mib < 1:
        raise SystemExit(f"--part-mib must be >= 1, got {part_mib}")
    size, chunk = src.stat().st_size, part_mib << 20
    parts = []
    with src.open("rb") as f:
        for i in range(max(1, -(-size // chunk))):
            folder = to / f"part-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f"{src.name}.{i}"
            part.write_bytes(f.read(chunk))
            parts.append({"path": part.relative_to(to).as_posix(), "bytes": part.stat().st_size,
                          "sha256": sha256_file(part)})
    manifest = {"name": src.name, "bytes": size, "sha256": sha256_file(src), "parts": parts}
    (to / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def join_parts(folder: Path, dest: Path) -> Path:
    """Reassemble what ``split_file`` cut, checking every part and the whole against the
    manifest; the file appears at ``dest`` only when it matches (nothing half-written)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    missing = [p["path"] for p in manifest["parts"] if not (folder / p["path"]).is_file()]
    if missing:
        raise SystemExit(f"parts not here yet: {', '.join(missing)} (carry them in earlier calls)")
    for p in manifest["parts"]:
        if sha256_file(folder / p["path"]) != p["sha256"]:
            raise SystemExit(f"part {p['path']} is damaged: sha256 differs from the manifest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    with tmp.open("wb") as out:
        for p in manifest["parts"]:
            out.write((folder / p["path"]).read_bytes())
    if sha256_file(tmp) != manifest["sha256"]:
        tmp.unlink()
        raise SystemExit(f"joined {manifest['name']} does not match its manifest's sha256")
    tmp.replace(dest)
    return dest


def real_weights(gguf: Path, staged: Path, dest: Path) -> Path:
    """A loadable checkpoint in ``dest`` from the bundled GGUF: checked against the checksum
    ``ranker.model`` pins for it, converted as ``recranker model prepare`` converts it."""
    from ranker.model import BUNDLED_GGUF_SHA256, convert_gguf

    convert_gguf(gguf, dest, BUNDLED_GGUF_SHA256)
    for name in MODEL_FILES:  # the staged tokenizer files, where the GGUF's lack one
        if (staged / name).is_file() and not (dest / name).is_file():
            shutil.copy2(staged / name, dest / name)
    print(f"real weights: {gguf.name}, sha256 checked, converted -> {dest}")
    return dest

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage")
    s.add_argument("--model-dir", type=Path, required=True)
    s.add_argument("--data", type=Path, required=True, help="unpacked ml-100k folder")
    s.add_argument("--home", type=Path, default=None, help="RECRANKER_HOME whose backbones/ travel")
    s.add_argument("--to", type=Path, default=Path(".gpu"))
    s.add_argument("--with-gguf", action="store_true", help="also the installed wheel's GGUF (the real weights)")
    r = sub.add_parser("random-weights")
    r.add_argument("staged", type=Path, help="staged model folder (config + tokenizer)")
    r.add_argument("dest", type=Path)
    c = sub.add_parser("split", help="cut a file into parts that travel one per call")
    c.add_argument("file", type=Path)
    c.add_argument("--to", type=Path, required=True)
    c.add_argument("--part-mib", type=int, default=PART_MIB)
    j = sub.add_parser("join", help="reassemble a split file, every part and the whole checked")
    j.add_argument("parts", type=Path, help="folder with the manifest and part-*/ folders")
    j.add_argument("dest", type=Path)
    w = sub.add_parser("real-weights", help="check and convert the bundled GGUF into a checkpoint")
    w.add_argument("gguf", type=Path)
    w.add_argument("staged", type=Path, help="staged model folder (config + tokenizer)")
    w.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "stage":
        stage(args.model_dir, args.data, args.home, args.to, args.with_gguf)
    elif args.cmd == "split":
        m = split_file(args.file, args.to, args.part_mib)
        print(f"{m['name']}: {m['bytes']} bytes in {len(m['parts'])} parts under {args.to}")
    elif args.cmd == "join":
        join_parts(args.parts, args.dest)
        print(f"joined {args.dest} from {args.parts}, sha256 checked")
    elif args.cmd == "real-weights":
        real_weights(args.gguf, args.staged, args.dest)
    else:
        random_weights(args.staged, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
