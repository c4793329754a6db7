"""bench.new_items_content: content-only ranks of new-item cases (pure parts)."""

from __future__ import annotations

import numpy as np

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.new_items_content import content_rows, llm_rows, title_vector_rows
from candidate_gen.recency_choice import target_ranks
from candidate_gen.split import Event
from training.evaluate import UserOutcome
from training.new_items import NewItemCase


def test_ranks_break_ties_in_the_given_order() -> None:
    def rank_of(target_pos: int, scores: list[float]) -> int:  # what content_rows asks of target_ranks
        return int(target_ranks(np.array([scores]), np.array([target_pos]))[0])

    assert rank_of(2, [0.0, 0.0, 0.0]) == 2  # 0-based, as candidate_gen.metrics reads ranks
    assert rank_of(2, [0.0, 1.0, 5.0]) == 0
    assert rank_of(0, [1.0, 1.0, 2.0]) == 1
    assert rank_of(1, [-np.inf, -np.inf, 1.0]) == 2  # unknown years (-inf) tie, in the given order


def test_content_rows_rank_by_genre_fit_year_closeness_and_newness() -> None:
    # items 0-1 the user's liked past (1950s comedies); 2-5 new candidates
    genres = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=float)
    years = np.array([1950.0, 1954.0, 1995.0, 1960.0, 1953.0, float("nan")])
    history = [Event(0, 5.0, 1), Event(1, 4.0, 2), Event(2, 1.0, 3)]  # a disliked film is not a like
    case = NewItemCase(user=0, target=4, candidates=[2, 3, 4, 5], history=history)
    rows = content_rows(genres, years, [case], recent=1)
    assert rows["backbone"] == [2]  # the given (random) order, 0-based
    assert rows["genres_all_likes"] == [3]  # 3 and 5 share the liked genre; 2 ties with 4 and comes first
    assert rows["genres_last_1"] == [3]
    assert rows["year"] == [0]  # 1953 is the closest to the liked mean, 1952
    assert rows["newest_first"] == [2]  # 1995, 1960, 1953; the unknown year last


def test_llm_rows_follow_the_cases_and_refuse_other_candidates(tmp_path: Path) -> None:
    ds = SimpleNamespace(user_ids=["u0", "u1"], item_ids=["a", "b", "c"])
    cases = [NewItemCase(1, 2, [0, 2], []), NewItemCase(0, 0, [1, 0], [])]
    modes = ("pointwise", "pairwise", "listwise")
    outcomes = [  # file order differs from the cases'; z-scores put the target first for u1 only
        UserOutcome("u0", "a", ["b", "a"], [0.0, 0.0], {m: {"b": 1.0, "a": -1.0} for m in modes}),
        UserOutcome("u1", "c", ["a", "c"], [0.0, 0.0], {m: {"a": -1.0, "c": 1.0} for m in modes}),
    ]
    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps(asdict(o)) + "\n" for o in outcomes))
    rows = llm_rows("clean", path, ds, cases)
    assert rows["clean:pointwise"] == [0, 1] and rows["clean:hybrid"] == [0, 1]
    assert "clean:backbone" not in rows
    other = [NewItemCase(1, 2, [2, 0], []), cases[1]]  # u1's candidates in another order
    with pytest.raises(SystemExit, match="not the outcomes of these cases"):
        llm_rows("clean", path, ds, other)


def test_title_vector_rows_rank_by_similarity_to_the_likes() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])  # 0 and 2 alike, 1 and 3 alike
    history = [Event(0, 5.0, 1), Event(0, 5.0, 2), Event(1, 4.0, 3), Event(3, 1.0, 4)]  # latest like: item 1
    case = NewItemCase(user=0, target=3, candidates=[2, 3], history=history)
    rows = title_vector_rows({15: vectors, 30: vectors}, [case])
    assert rows["titles_layer15_all"] == [1]  # two of three likes are like item 2
    assert rows["titles_layer15_last2"] == [1]  # the last two likes: item 0, item 1 -> tie, given order
    assert rows["titles_layer30_all"] == rows["titles_layer15_all"]
    history_last = history[:2] + [Event(1, 4.0, 3), Event(1, 5.0, 4)]
    last = title_vector_rows({15: vectors}, [NewItemCase(0, 3, [2, 3], history_last)])
    assert last["titles_layer15_last2"] == [0]  # the last two likes are item 1: item 3 first
