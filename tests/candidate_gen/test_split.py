"""The leave-one-out split: held-out items never leak into training or context."""

from __future__ import annotations

import numpy as np
import pytest

from candidate_gen.data import Dataset, load_movielens_100k
from candidate_gen.split import leave_one_out


def make_dataset(rows: list[tuple[str, str, float, int]]) -> Dataset:
    users = sorted({r[0] for r in rows})
    items = sorted({r[1] for r in rows})
    return Dataset(
        name="tiny",
        user_ids=users,
        item_ids=items,
        titles=[f"title {i}" for i in items],
        users=np.array([users.index(r[0]) for r in rows]),
        items=np.array([items.index(r[1]) for r in rows]),
        ratings=np.array([r[2] for r in rows], dtype=np.float32),
        timestamps=np.array([r[3] for r in rows]),
        fingerprint="x",
    )


def test_hand_built_user():
    # likes at t=1,3,5,7; dislike at t=2; neutral at t=6; a dislike after the test like at t=9
    ds = make_dataset([("u", "a", 5, 1), ("u", "b", 1, 2), ("u", "c", 4, 3), ("u", "d", 5, 5),
                       ("u", "e", 3, 6), ("u", "f", 4, 7), ("u", "g", 2, 9)])
    s = leave_one_out(ds).users[0]
    name = lambda i: ds.item_ids[i]  # noqa: E731
    assert name(s.held_out("test")) == "f" and name(s.held_out("valid")) == "d"
    assert [name(i) for i in s.train_likes] == ["a", "c"]
    assert [name(e.item) for e in s.context("train")] == ["a", "b", "c"]
    assert [name(e.item) for e in s.context("valid")] == ["a", "b", "c"]
    assert [name(e.item) for e in s.context("test")] == ["a", "b", "c", "d", "e"]  # nothing from t >= 7
    assert name(s.held_out("test")) not in {name(i) for i in s.seen("test")}


def test_same_timestamp_ties_follow_file_order():
    ds = make_dataset([("u", "a", 5, 1), ("u", "b", 5, 1), ("u", "c", 5, 1)])
    s = leave_one_out(ds).users[0]
    assert ds.item_ids[s.held_out("test")] == "c" and ds.item_ids[s.held_out("valid")] == "b"


def test_user_with_one_like_has_only_a_test_item():
    s = leave_one_out(make_dataset([("u", "a", 1, 1), ("u", "b", 4, 2)])).users[0]
    assert s.held_out("valid") is None and s.train_likes == [] and s.held_out("test") == 1


@pytest.fixture(scope="module")
def ml_split(ml100k_dir):
    return leave_one_out(load_movielens_100k(ml100k_dir))


def test_ml100k_counts_match_the_paper(ml_split):
    c = ml_split.counts()
    assert (c["users_with_likes"], c["likes"], c["dislikes"]) == (942, 55_375, 17_480)
    assert c["train_likes"] + c["valid"] + c["test"] == c["likes"]


def test_ml100k_invariants(ml_split):
    for s in ml_split.users.values():
        test, valid = s.held_out("test"), s.held_out("valid")
        if test is None:
            continue
        t_test = s.events[s.test_pos].timestamp
        assert test not in s.train_likes and valid not in s.train_likes
        assert all(e.timestamp <= t_test for e in s.context("test"))
        assert s.events[s.test_pos] not in s.context("test")
        if valid is not None:
            t_valid = s.events[s.valid_pos].timestamp
            assert all(e.timestamp <= t_valid for e in s.context("train"))
            assert s.valid_pos < s.test_pos
            # every training like happens before the validation like
            assert set(s.train_likes) <= {e.item for e in s.context("train")}
