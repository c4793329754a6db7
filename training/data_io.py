"""Files of the training pipeline: atomic JSON / JSONL writes, reads, checksums.

A dataset folder holds ``examples.jsonl`` (one instruction example per line) and
``manifest.json`` (how it was made, with the recipe: every choice that decides the
examples). Writes go to a temporary file in the same folder and are renamed into place, so
a crash never leaves a half-written file behind; a folder is rebuilt only from its own
recipe, so one command never replaces another's examples.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from common.checksum import sha256_file

EXAMPLES_FILE = "examples.jsonl"
MANIFEST_FILE = "manifest.json"


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return _atomic_write(path, lambda f: f.write(text))


def write_json_atomic(path: Path, doc) -> Path:
    return _atomic_write(path, lambda f: json.dump(doc, f, indent=2, ensure_ascii=False))


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> Path:
    def write(f):
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return _atomic_write(path, write)


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return rows


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return json.loads(path.read_text(encoding="utf-8"))


file_sha256 = sha256_file  # the tree's one file checksum (common.checksum)


def folder_sha256(folder: Path, pattern: str = "*") -> str:
    """Checksum over the names and contents of the files in ``folder`` matching ``pattern``."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).glob(pattern)):
        if p.is_file():
            h.update(p.name.encode())
            h.update(file_sha256(p).encode())
    return h.hexdigest()


# ---- dataset folders: one recipe per folder -----------------------------------------------

RECIPE_KEY = "recipe"  # in manifest.json: every choice that decides the examples


class DatasetFolderError(ValueError):
    """A dataset folder holds examples from another recipe; the message says which choices differ."""


def dataset_folder_name(dataset: str, kind: str, sampling: str, budget: int, options: Iterable[str] = ()) -> str:
    """The default folder name; ``options`` names every non-default choice, so two commands
    that build different examples never share a default folder."""
    return "-".join([dataset, kind, sampling, str(budget), *options])


def as_json(doc):
    """``doc`` as it reads back from JSON (tuples become lists), for comparing with a manifest."""
    return json.loads(json.dumps(doc, default=str))


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} there, {new!r} now)"]


def check_rebuild(folder: Path, recipe: dict) -> None:
    """Refuse to overwrite examples built from another recipe (an adapter may have been tuned
    on them); rebuilding from the same recipe writes the same examples, so it may go on."""
    manifest = Path(folder) / MANIFEST_FILE
    if not manifest.is_file():
        return
    old = read_json(manifest).get(RECIPE_KEY)
    if old == as_json(recipe):
        return
    what = ("with other choices: " + "; ".join(_differences(old, as_json(recipe)))) if old is not None \
        else "by an older version (its manifest records no recipe)"
    raise DatasetFolderError(f"{folder} already holds instruction data built {what}; "
                             "pass --out with another folder, or remove it first")
