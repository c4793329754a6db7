"""stack.profiles: the one conversion of dataset rows and resolved items into ranker objects."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from candidate_gen.split import Event
from ranker.types import Candidate, HistoryEntry, UserProfile
from stack.profiles import candidates_from_items, candidates_from_named, profile_from_events, profile_from_items
from tests.datasets import dataset_from_rows


@dataclass
class Item:
    item_id: str
    title: str
    rating: float | None = None
    genres: tuple[str, ...] = ()


def test_rows_become_profiles_and_candidates() -> None:
    ds = dataset_from_rows([(0, 0, 2.0, 2), (0, 1, 5.0, 1), (0, 2, 4.0, 3)], 1, 3)
    events = [Event(item=1, rating=5.0, timestamp=1), Event(item=0, rating=2.0, timestamp=2)]
    profile = profile_from_events(ds, "u", events)
    assert profile == UserProfile("u", (HistoryEntry(ds.item_ids[1], ds.titles[1], 5.0),
                                        HistoryEntry(ds.item_ids[0], ds.titles[0], 2.0)))
    cands = candidates_from_items(ds, [2, 0], [0.5, 0.25])
    assert cands == [Candidate(ds.item_ids[2], ds.titles[2], 0.5), Candidate(ds.item_ids[0], ds.titles[0], 0.25)]
    assert [c.backbone_score for c in candidates_from_items(ds, [1], None)] == [None]
    with pytest.raises(ValueError, match="2 items but 1 scores"):
        candidates_from_items(ds, [0, 1], [1.0])
    ds.genres = [("Drama",), (), ("Comedy", "War")]  # the catalog's genres travel with its items
    assert profile_from_events(ds, "u", events).history[0].genres == ()
    assert profile_from_events(ds, "u", events).history[1].genres == ("Drama",)
    assert candidates_from_items(ds, [2], None)[0].genres == ("Comedy", "War")


def test_resolved_items_keep_client_titles_and_unknown_scores() -> None:
    items = [Item("50", "Star Wars (1977)", 5.0), Item("new-1", "Dune (2024)", None, ("Sci-Fi",))]
    assert profile_from_items("u", items).history == (HistoryEntry("50", "Star Wars (1977)", 5.0),
                                                      HistoryEntry("new-1", "Dune (2024)", None, ("Sci-Fi",)))
    assert candidates_from_named(items, [1.5, None]) == [Candidate("50", "Star Wars (1977)", 1.5),
                                                         Candidate("new-1", "Dune (2024)", None, ("Sci-Fi",))]
