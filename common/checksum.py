"""The one file checksum helper: sha256 over one or several files, streamed in chunks.

It lives below candidate_gen and ranker because both hash files (the dataset fingerprint,
the bundled model, an adapter's revision) and neither may import the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20


def sha256_files(paths: Iterable[Path], chunk: int = CHUNK) -> str:
    """Hex sha256 of the files' bytes, concatenated in the given order."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of one file."""
    return sha256_files([path], chunk)
