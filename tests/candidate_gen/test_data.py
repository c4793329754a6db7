"""Loaders: MovieLens-100K format, the generic CSV format, and every bad-file case."""

from __future__ import annotations

from pathlib import Path

import pytest

from candidate_gen.data import DataError, load_generic, load_movielens_100k


def write_ml(folder: Path, data: str, items: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(data)
    (folder / "u.item").write_bytes(items)
    return folder


TOY_STORY_FLAGS = "|".join("1" if k in (3, 4, 5) else "0" for k in range(19))  # Animation, Children's, Comedy
NO_GENRE_FLAGS = "|".join("1" if k == 0 else "0" for k in range(19))  # "unknown" only
ITEMS = (f"1|Toy Story (1995)|01-Jan-1995||url|{TOY_STORY_FLAGS}\n"
         f"2|Caf\xe9 Society (1995)|01-Jan-1995||url|{NO_GENRE_FLAGS}\n").encode("iso-8859-1")


def test_movielens_format_reads_latin1_titles_and_maps_ids(tmp_path):
    ds = load_movielens_100k(write_ml(tmp_path, "10\t2\t5\t100\n9\t1\t3\t50\n", ITEMS))
    assert ds.user_ids == ["9", "10"]  # numeric ids sort numerically
    assert ds.titles[ds.item_index["2"]] == "Café Society (1995)"
    assert ds.ratings.tolist() == [5.0, 3.0]
    assert [ds.user_ids[u] for u in ds.users] == ["10", "9"]
    assert len(ds.fingerprint) == 64


def test_movielens_genres_come_from_the_flags_and_unknown_is_none(tmp_path):
    ds = load_movielens_100k(write_ml(tmp_path, "10\t2\t5\t100\n9\t1\t3\t50\n", ITEMS))
    assert ds.genres[ds.item_index["1"]] == ("Animation", "Children's", "Comedy")
    assert ds.genres[ds.item_index["2"]] == ()
    trimmed = load_movielens_100k(write_ml(tmp_path / "trimmed", "1\t1\t5\t1\n", b"1|Toy Story (1995)\n"))
    assert trimmed.genres == [()]  # an id|title file has no genre columns: none, not an error


def test_movielens_bad_genre_flags_are_named(tmp_path):
    with pytest.raises(DataError, match=r"u\.item:1: expected 19 genre flags"):
        load_movielens_100k(write_ml(tmp_path, "1\t1\t5\t1\n", b"1|Toy Story (1995)|x||url|0|1\n"))


def test_real_ml100k_counts(ml100k_dir):
    ds = load_movielens_100k(ml100k_dir)
    assert (ds.n_users, ds.n_items, len(ds.ratings)) == (943, 1682, 100_000)
    assert ds.genres[ds.item_index["1"]] == ("Animation", "Children's", "Comedy")
    assert sum(1 for g in ds.genres if not g) == 2  # two items are flagged "unknown" only


@pytest.mark.parametrize(
    "data, message",
    [
        ("1\t1\tfive\t100\n", r"u\.data:1: rating 'five' is not a number"),
        ("1\t1\t5\t100\n1\t7\t4\t100\n", r"u\.data:2: unknown item id '7'"),
        ("1\t1\t5\n", r"u\.data:1: expected 4 tab-separated fields, got 3"),
        ("1\t1\t9\t100\n", r"u\.data:1: rating 9 is not on the accepted scale: 0\.5 to 5\.0 in steps of 0\.5"),
        ("\n\n", r"u\.data: file is empty"),
    ],
)
def test_movielens_bad_files(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        load_movielens_100k(write_ml(tmp_path, data, ITEMS))


def test_movielens_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"u\.item: file not found"):
        load_movielens_100k(tmp_path)


def write_generic(folder: Path, interactions: str | bytes, items: str = "item_id,title\na,Alpha\nb,Beta\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    raw = interactions.encode() if isinstance(interactions, str) else interactions
    (folder / "interactions.csv").write_bytes(raw)
    (folder / "items.csv").write_text(items)
    return folder


def test_generic_format_with_string_ids_and_float_ratings(tmp_path):
    ds = load_generic(write_generic(tmp_path / "shop", "user_id,item_id,rating,timestamp\nu-x,a,4.5,10\nu-y,b,2,11\n"))
    assert ds.name == "shop"
    assert ds.user_ids == ["u-x", "u-y"] and ds.item_ids == ["a", "b"]
    assert ds.ratings.tolist() == [4.5, 2.0]


def test_generic_optional_genres_column(tmp_path):
    items = "item_id,title,genres\na,Alpha,Action|Sci-Fi\nb,Beta,(no genres listed)\nc,Gamma,\n"
    ds = load_generic(write_generic(tmp_path / "g", "user_id,item_id,rating,timestamp\nu,a,4,1\nu,c,3,2\n", items))
    assert [ds.genres[ds.item_index[i]] for i in "abc"] == [("Action", "Sci-Fi"), (), ()]
    plain = load_generic(write_generic(tmp_path / "p", "user_id,item_id,rating,timestamp\nu,a,4,1\n"))
    assert plain.genres == [(), ()]


@pytest.mark.parametrize(
    "interactions, message",
    [
        ("user_id,item_id,timestamp\nu,a,1\n", r"interactions\.csv:1: missing column\(s\) rating"),
        ("user_id,item_id,rating,timestamp\nu,a,great,1\n", r"interactions\.csv:2: rating 'great' is not a number"),
        ("user_id,item_id,rating,timestamp\nu,a,4,1\nu,b,3.7,2\n", r"interactions\.csv:3: rating 3\.7 is not on the accepted scale: 0\.5 to 5\.0"),
        ("user_id,item_id,rating,timestamp\nu,a,0,1\n", r"interactions\.csv:2: rating 0 is not on the accepted scale"),
        ("user_id,item_id,rating,timestamp\nu,a,5.5,1\n", r"interactions\.csv:2: rating 5\.5 is not on the accepted scale"),
        ("user_id,item_id,rating,timestamp\nu,a,4,1\nu,zzz,4,2\n", r"interactions\.csv:3: unknown item id 'zzz'"),
        ("", r"interactions\.csv: file is empty"),
        ("user_id,item_id,rating,timestamp\n", r"interactions\.csv: file has a header but no rows"),
        ("user_id,item_id,rating,timestamp\nu,a,4\n", r"interactions\.csv:2: wrong number of fields"),
        (b"user_id,item_id,rating,timestamp\nu\xff,a,4,1\n", r"interactions\.csv:2: not valid utf-8-sig text"),
    ],
)
def test_generic_bad_files(tmp_path, interactions, message):
    with pytest.raises(DataError, match=message):
        load_generic(write_generic(tmp_path, interactions))


def test_generic_items_missing_title_column(tmp_path):
    with pytest.raises(DataError, match=r"items\.csv:1: missing column\(s\) title"):
        load_generic(write_generic(tmp_path, "user_id,item_id,rating,timestamp\nu,a,4,1\n", items="item_id,name\na,A\n"))


def test_generic_half_star_scale_is_loaded_and_split_by_the_like_rule(tmp_path):
    """A generated MovieLens-style half-star dataset: 0.5..5.0 load; likes are >= 4, dislikes <= 2."""
    from candidate_gen.split import leave_one_out

    stars = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    items = "item_id,title\n" + "".join(f"m{k},Movie {k} (2001)\n" for k in range(len(stars)))
    lines = ["user_id,item_id,rating,timestamp"]
    for u in range(3):
        lines += [f"user{u},m{k},{s},{1_600_000_000 + 100 * u + k}" for k, s in enumerate(stars)]
    ds = load_generic(write_generic(tmp_path / "half", "\n".join(lines) + "\n", items=items))
    assert sorted(set(ds.ratings.tolist())) == stars
    counts = leave_one_out(ds).counts()
    assert counts["likes"] == 3 * 3 and counts["dislikes"] == 3 * 4  # 4.0/4.5/5.0 liked; 0.5..2.0 disliked


def test_without_items_drops_their_interactions_and_keeps_every_index():
    from candidate_gen.data import without_items
    from tests.datasets import dataset_from_rows

    ds = dataset_from_rows([(0, 0, 5, 1), (0, 1, 4, 2), (1, 2, 3, 3), (1, 1, 2, 4)], n_users=2, n_items=3)
    cut = without_items(ds, frozenset({1}), "new-items")
    assert list(zip(cut.users.tolist(), cut.items.tolist(), cut.ratings.tolist(), cut.timestamps.tolist())) == [
        (0, 0, 5.0, 1), (1, 2, 3.0, 3)]
    # the catalogue and user ids stay, so item indices still match the full dataset's
    assert (cut.item_ids, cut.titles, cut.genres, cut.user_ids) == (ds.item_ids, ds.titles, ds.genres, ds.user_ids)
    assert cut.name == "synthetic-without-new-items"
    assert cut.fingerprint not in (ds.fingerprint, without_items(ds, frozenset({2}), "new-items").fingerprint)
    assert len(ds.items) == 4  # the input is untouched
    with pytest.raises(ValueError, match="tag"):
        without_items(ds, frozenset({1}), "a/b")
