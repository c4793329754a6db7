"""Fetch the official MovieLens-100K archive when the data folder is absent.

The archive is verified against GroupLens' published MD5 before anything is unpacked,
and unpacked into a temporary folder that is renamed into place only when complete,
so an interrupted or corrupt download never leaves a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from candidate_gen.data import ML100K_FILES, DataError, Dataset, load_generic, load_movielens_100k

log = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"


def download_ml100k(data_dir: Path, url: str = ML100K_URL, md5: str = ML100K_MD5, timeout: float = 60.0) -> Path:
    """Download, verify and unpack ml-100k into ``data_dir/ml-100k``; return that folder."""
    data_dir = Path(data_dir)
    target = data_dir / "ml-100k"
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".ml-100k-") as tmp:
        archive = Path(tmp) / "ml-100k.zip"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, archive.open("wb") as out:
                size = int(resp.headers.get("Content-Length") or 0) or None
                # disable=None: a bar on a terminal only; a log gets the two lines around it
                with tqdm(total=size, unit="B", unit_scale=True, desc="ml-100k.zip", disable=None, leave=False) as bar:
                    while chunk := resp.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            raise DataError(f"could not download {url}: {e}") from None
        log.info("downloaded %s (%d bytes)", url, archive.stat().st_size)
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        if digest != md5:
            raise DataError(f"{url}: checksum mismatch (md5 {digest}, expected {md5}); nothing was unpacked")
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():  # refuse paths that escape the folder
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise DataError(f"{url}: archive member {name!r} has an unsafe path")
                zf.extractall(unpacked)
        except zipfile.BadZipFile:
            raise DataError(f"{url}: not a zip archive") from None
        src = unpacked / "ml-100k"
        missing = [f for f in ML100K_FILES if not (src / f).is_file()]
        if missing:
            raise DataError(f"{url}: archive lacks ml-100k/{', ml-100k/'.join(missing)}")
        if target.exists():
            shutil.rmtree(target)
        src.rename(target)
    return target


def load_dataset(dataset: str, data_dir: Path, url: str = ML100K_URL, md5: str = ML100K_MD5) -> Dataset:
    """Resolve a dataset name ('ml-100k') or a folder in the generic CSV format."""
    data_dir = Path(data_dir)
    if dataset == "ml-100k":
        folder = data_dir / "ml-100k"
        if not all((folder / f).is_file() for f in ML100K_FILES):
            try:
                folder = download_ml100k(data_dir, url=url, md5=md5)
            except DataError as e:
                # the user's fix is a setting, not this function's argument: name the variable
                raise DataError(f"no ml-100k/ under {data_dir} and {e}; set RECRANKER_DATA_DIR to a folder "
                                "holding an unpacked ml-100k/") from None
        return load_movielens_100k(folder)
    path = Path(dataset)
    if path.is_dir():
        return load_generic(path)
    if (data_dir / dataset).is_dir():
        return load_generic(data_dir / dataset)
    raise DataError(f"unknown dataset {dataset!r}: use 'ml-100k' or a folder with interactions.csv and items.csv")
