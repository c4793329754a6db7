"""Files of the training pipeline: atomic JSON / JSONL writes, reads, checksums.

A dataset folder holds ``examples.jsonl`` (one instruction example per line) and
``manifest.json`` (how it was made). Writes go to a temporary file in the same folder
and are renamed into place, so a crash never leaves a half-written file behind.
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
