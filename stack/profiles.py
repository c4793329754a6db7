"""The one place that turns dataset rows, catalog indices and client-named items into the
ranker's domain objects (UserProfile / HistoryEntry / Candidate).

Training examples, offline evaluation and the service all build a user's history and
candidate list here, so the three cannot drift apart. It sits in the composition layer
because it needs both candidate_gen's catalog and ranker's types (which know nothing of
each other).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from candidate_gen.data import Dataset
from candidate_gen.split import Event
from ranker.types import Candidate, HistoryEntry, UserProfile


class NamedItem(Protocol):
    """An item already resolved to an id, a title and its genres (a catalog item or a client's own)."""

    item_id: str
    title: str
    genres: tuple[str, ...]


class RatedItem(NamedItem, Protocol):
    rating: float | None


def profile_from_events(dataset: Dataset, user_id: str, events: Iterable[Event]) -> UserProfile:
    """A user's history (oldest first) with titles and ratings, from catalog events."""
    history = tuple(
        HistoryEntry(item_id=dataset.item_ids[e.item], title=dataset.titles[e.item], rating=e.rating,
                     genres=dataset.genres[e.item])
        for e in events
    )
    return UserProfile(user_id=user_id, history=history)


def profile_from_items(user_id: str, items: Iterable[RatedItem]) -> UserProfile:
    """A user's history (oldest first) from already resolved items (catalog or not)."""
    return UserProfile(user_id, tuple(HistoryEntry(e.item_id, e.title, e.rating, e.genres) for e in items))


def candidates_from_items(dataset: Dataset, items: Sequence[int], scores: Sequence[float] | None) -> list[Candidate]:
    """Candidates for catalog item indices, carrying the backbone's scores when given."""
    if scores is not None and len(scores) != len(items):
        raise ValueError(f"{len(items)} items but {len(scores)} scores")
    return [
        Candidate(
            item_id=dataset.item_ids[i],
            title=dataset.titles[i],
            backbone_score=None if scores is None else float(scores[n]),
            genres=dataset.genres[i],
        )
        for n, i in enumerate(items)
    ]


def candidates_from_named(items: Sequence[NamedItem], scores: Sequence[float | None]) -> list[Candidate]:
    """Candidates for already resolved items; a None score = the backbone does not know the item."""
    if len(scores) != len(items):
        raise ValueError(f"{len(items)} items but {len(scores)} scores")
    return [Candidate(r.item_id, r.title, None if s is None else float(s), r.genres) for r, s in zip(items, scores)]
