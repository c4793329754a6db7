"""Interaction datasets: MovieLens-100K and a generic CSV format, loaded into one shape.

IDs are strings at the edges and dense int indices inside (``Dataset.user_ids[u]`` is the
external id of user index ``u``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.checksum import sha256_files

log = logging.getLogger(__name__)

ML100K_FILES = ("u.data", "u.item")
# u.item's 19 trailing 0/1 flags, in u.genre's order; "unknown" is no genre at all
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names file, line and problem."""


@dataclass
class Dataset:
    name: str
    user_ids: list[str]  # index -> external id
    item_ids: list[str]
    titles: list[str]  # aligned with item_ids
    users: np.ndarray  # (n,) int64 user index per interaction
    items: np.ndarray  # (n,) int64 item index
    ratings: np.ndarray  # (n,) float32, 0.5..5.0 (whole or half stars)
    timestamps: np.ndarray  # (n,) int64, seconds
    fingerprint: str  # sha256 over the interaction files, ties artifacts to the data
    genres: list[tuple[str, ...]] | None = None  # aligned with item_ids; None: the data has none

    def __post_init__(self) -> None:
        if self.genres is None:
            self.genres = [()] * len(self.item_ids)
        if len(self.genres) != len(self.item_ids) or len(self.titles) != len(self.item_ids):
            raise ValueError("titles and genres must be aligned with item_ids")
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _fingerprint(paths: list[Path]) -> str:
    return sha256_files(paths)


def _build(name: str, rows: list[tuple[str, str, float, int]], items: dict[str, str], fp: str,
           genres: dict[str, tuple[str, ...]] | None = None) -> Dataset:
    user_ids = sorted({r[0] for r in rows}, key=_natural_key)
    item_ids = sorted(items, key=_natural_key)
    uidx = {u: i for i, u in enumerate(user_ids)}
    iidx = {it: i for i, it in enumerate(item_ids)}
    return Dataset(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        titles=[items[i] for i in item_ids],
        users=np.fromiter((uidx[r[0]] for r in rows), dtype=np.int64, count=len(rows)),
        items=np.fromiter((iidx[r[1]] for r in rows), dtype=np.int64, count=len(rows)),
        ratings=np.fromiter((r[2] for r in rows), dtype=np.float32, count=len(rows)),
        timestamps=np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
        fingerprint=fp,
        genres=[(genres or {}).get(i, ()) for i in item_ids],
    )


def without_items(ds: Dataset, items: frozenset[int] | set[int], tag: str) -> Dataset:
    """``ds`` with every interaction on ``items`` removed, the catalogue and user indices kept
    (so item indices still match the full dataset). A distinct name and fingerprint keep
    artifacts trained on it (backbones, instruction data) apart from the full dataset's."""
    if not tag or "/" in tag:
        raise ValueError(f"tag must be a non-empty name without '/', got {tag!r}")
    keep = ~np.isin(ds.items, np.fromiter(sorted(items), dtype=np.int64, count=len(items)))
    marker = ",".join(map(str, sorted(items))).encode()
    fingerprint = hashlib.sha256(ds.fingerprint.encode() + b"|without|" + marker).hexdigest()
    return Dataset(name=f"{ds.name}-without-{tag}", user_ids=list(ds.user_ids), item_ids=list(ds.item_ids),
                   titles=list(ds.titles), users=ds.users[keep], items=ds.items[keep], ratings=ds.ratings[keep],
                   timestamps=ds.timestamps[keep], fingerprint=fingerprint, genres=list(ds.genres))


def _natural_key(s: str) -> tuple[int, int | str]:
    # numeric ids sort numerically ("2" < "10"), others lexically after them
    return (0, int(s)) if s.isdigit() else (1, s)


def _read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid {encoding} text (byte 0x{raw[e.start]:02x})") from None


RATING_MIN, RATING_MAX = 0.5, 5.0
RATING_SCALE = "0.5 to 5.0 in steps of 0.5 (whole stars 1-5 or half stars; likes >= 4, dislikes <= 2)"


def _parse_rating(path: Path, line: int, value: str) -> float:
    """A star rating: whole stars 1..5 (MovieLens-100K) or half stars 0.5..5.0 (later MovieLens)."""
    try:
        r = float(value)
    except ValueError:
        raise DataError(f"{path}:{line}: rating {value!r} is not a number; accepted scale: {RATING_SCALE}") from None
    if not (RATING_MIN <= r <= RATING_MAX) or not (2 * r).is_integer():
        raise DataError(f"{path}:{line}: rating {value.strip()} is not on the accepted scale: {RATING_SCALE}")
    return r


def _parse_timestamp(path: Path, line: int, value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise DataError(f"{path}:{line}: timestamp {value!r} is not a number") from None


def load_movielens_100k(folder: Path) -> Dataset:
    """Read an unpacked ml-100k folder (u.data tab-separated, u.item ISO-8859-1, '|'-separated:
    id|title|release|video release|url|19 genre flags)."""
    folder = Path(folder)
    item_path, data_path = folder / "u.item", folder / "u.data"
    items: dict[str, str] = {}
    genres: dict[str, tuple[str, ...]] = {}
    for n, line in enumerate(_read_text(item_path, "iso-8859-1").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 2:
            raise DataError(f"{item_path}:{n}: expected 'id|title|...', got {line[:60]!r}")
        items[parts[0].strip()] = parts[1].strip()
        genres[parts[0].strip()] = _ml100k_genres(item_path, n, parts[5:])
    rows = []
    for n, line in enumerate(_read_text(data_path, "utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            raise DataError(f"{data_path}:{n}: expected 4 tab-separated fields, got {len(parts)}")
        user, item, rating, ts = (p.strip() for p in parts)
        if item not in items:
            raise DataError(f"{data_path}:{n}: unknown item id {item!r} (not in u.item)")
        rows.append((user, item, _parse_rating(data_path, n, rating), _parse_timestamp(data_path, n, ts)))
    return _build("ml-100k", rows, items, _fingerprint([data_path, item_path]), genres)


def _ml100k_genres(path: Path, line: int, flags: list[str]) -> tuple[str, ...]:
    if not flags:  # a trimmed u.item (id|title only) has no genre columns
        return ()
    if len(flags) != len(ML100K_GENRES) or any(f.strip() not in ("0", "1") for f in flags):
        raise DataError(f"{path}:{line}: expected {len(ML100K_GENRES)} genre flags (0 or 1) after the url, "
                        f"got {'|'.join(flags)[:60]!r}")
    return tuple(g for g, f in zip(ML100K_GENRES, flags) if f.strip() == "1" and g != "unknown")


def _split_genres(value: str | None) -> tuple[str, ...]:
    """'Action|Comedy' (MovieLens style) -> ('Action', 'Comedy'); '(no genres listed)' is none."""
    if not value:
        return ()
    return tuple(g for g in (p.strip() for p in value.split("|")) if g and g != "(no genres listed)")


def _csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = _read_text(path, "utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)} (header is {', '.join(header)})")
    rows = []
    for row in reader:
        line = reader.line_num
        if None in row or any(row.get(c) in (None, "") for c in required):
            raise DataError(f"{path}:{line}: wrong number of fields or an empty value in {required}")
        rows.append((line, row))
    if not rows:
        raise DataError(f"{path}: file has a header but no rows")
    return rows


def load_generic(folder: Path) -> Dataset:
    """Read ``interactions.csv`` (user_id,item_id,rating,timestamp) and ``items.csv`` (item_id,title
    and an optional genres column, '|'-separated as in MovieLens: ``Action|Comedy``).

    Ratings are stars, whole (1..5) or half (0.5..5.0); likes are >= 4, dislikes <= 2
    (candidate_gen.split). Timestamps are seconds (an integer or a float)."""
    folder = Path(folder)
    items_path, inter_path = folder / "items.csv", folder / "interactions.csv"
    items: dict[str, str] = {}
    genres: dict[str, tuple[str, ...]] = {}
    for line, row in _csv_rows(items_path, ("item_id", "title")):
        items[row["item_id"].strip()] = row["title"].strip()
        genres[row["item_id"].strip()] = _split_genres(row.get("genres"))
    rows = []
    for line, row in _csv_rows(inter_path, ("user_id", "item_id", "rating", "timestamp")):
        item = row["item_id"].strip()
        if item not in items:
            raise DataError(f"{inter_path}:{line}: unknown item id {item!r} (not in items.csv)")
        rows.append(
            (
                row["user_id"].strip(),
                item,
                _parse_rating(inter_path, line, row["rating"]),
                _parse_timestamp(inter_path, line, row["timestamp"]),
            )
        )
    return _build(folder.name, rows, items, _fingerprint([inter_path, items_path]), genres)
