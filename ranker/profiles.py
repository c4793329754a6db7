"""Adapters from the catalog's indices (candidate_gen) to the ranker's domain objects.

One place converts, so training examples, offline evaluation and the service all build
the user's history and the candidate list the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from candidate_gen.data import Dataset
from candidate_gen.split import Event
from ranker.types import Candidate, HistoryEntry, UserProfile


def profile_from_events(dataset: Dataset, user_id: str, events: Iterable[Event]) -> UserProfile:
    """A user's history (oldest first) with titles and ratings, from catalog events."""
    history = tuple(
        HistoryEntry(item_id=dataset.item_ids[e.item], title=dataset.titles[e.item], rating=e.rating) for e in events
    )
    return UserProfile(user_id=user_id, history=history)


def candidates_from_items(dataset: Dataset, items: Sequence[int], scores: Sequence[float] | None) -> list[Candidate]:
    """Candidates for catalog item indices, carrying the backbone's scores when given."""
    if scores is not None and len(scores) != len(items):
        raise ValueError(f"{len(items)} items but {len(scores)} scores")
    return [
        Candidate(
            item_id=dataset.item_ids[i],
            title=dataset.titles[i],
            backbone_score=None if scores is None else float(scores[n]),
        )
        for n, i in enumerate(items)
    ]
