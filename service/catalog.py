"""The catalog seen from the HTTP edge: external string ids <-> dense indices, and the
assembly of a ranker request (UserProfile + candidates) from the dataset, the user's stored
events and whatever the client sent.

A user's history is their dataset events followed by their stored (posted) events, unless
the request overrides it. Every catalog item in that history is excluded from retrieved
candidates. Items outside the catalog may appear in histories and candidate lists when
the client gives a title: the LLM can rank them, the backbone cannot (backbone_score None).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from candidate_gen.data import Dataset
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import LIKE_MIN, Split
from ranker.types import Candidate, UserProfile
from service.store import StoredEvent
from stack.profiles import candidates_from_items, candidates_from_named, profile_from_items

log = logging.getLogger(__name__)


class UnknownUser(LookupError):
    def __init__(self, user_id: str, where: str = "") -> None:
        super().__init__(
            f"{where + ': ' if where else ''}unknown user {user_id!r}: not in the dataset and no events "
            "stored for them; POST /v1/events first (or send a 'history' with /v1/rank)")
        self.user_id = user_id


class UnknownItem(ValueError):
    def __init__(self, item_id: str, where: str) -> None:
        super().__init__(f"{where}: unknown item id {item_id!r} (not in the catalog); "
                         "give a 'title' to use an item the catalog does not have")
        self.item_id = item_id
        self.where = where


class DuplicateItem(ValueError):
    def __init__(self, item_id: str, where: str) -> None:
        super().__init__(f"{where}: item id {item_id!r} appears more than once")


@dataclass(frozen=True)
class ItemRef:
    """An item as a client names it: a catalog id, or any id plus a title for a new item."""

    item_id: str
    title: str | None = None
    genres: tuple[str, ...] = ()  # used only outside the catalog, like the title


@dataclass(frozen=True)
class HistoryRef:
    item_id: str
    rating: float | None = None
    title: str | None = None
    genres: tuple[str, ...] = ()


@dataclass
class Prepared:
    profile: UserProfile
    candidates: list[Candidate]
    retrieve_s: float  # retrieval or backbone scoring time


@dataclass(frozen=True)
class _Resolved:
    item_id: str
    title: str
    index: int | None  # None outside the catalog
    rating: float | None = None
    genres: tuple[str, ...] = ()


class Catalog:
    def __init__(self, dataset: Dataset, split: Split, generator: CandidateGenerator, history_max: int) -> None:
        self.dataset = dataset
        self.split = split
        self.generator = generator
        self.history_max = history_max

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def knows_user(self, user_id: str) -> bool:
        return user_id in self.dataset.user_index

    def item_index(self, item_id: str) -> int | None:
        return self.dataset.item_index.get(item_id)

    def resolve(self, ref: ItemRef | HistoryRef | StoredEvent, where: str) -> _Resolved:
        """Catalog title and genres for catalog ids; a client title is required for anything else."""
        idx = self.item_index(ref.item_id)
        rating = getattr(ref, "rating", None)
        if idx is not None:
            return _Resolved(ref.item_id, self.dataset.titles[idx], idx, rating, self.dataset.genres[idx])
        if not ref.title:
            raise UnknownItem(ref.item_id, where)
        return _Resolved(ref.item_id, ref.title, None, rating, tuple(getattr(ref, "genres", ())))

    def check_events(self, events: Sequence[StoredEvent], where: str = "events") -> None:
        for n, e in enumerate(events):
            self.resolve(e, f"{where}[{n}]")

    def prepare(
        self,
        user_id: str,
        stored: Sequence[StoredEvent],
        history: Sequence[HistoryRef] | None,
        candidates: Sequence[ItemRef] | None,
        num_candidates: int,
        where: str = "",
        candidates_field: str = "candidates",
    ) -> Prepared:
        """Build the ranker's inputs; raises UnknownUser / UnknownItem / DuplicateItem."""
        user = self.dataset.user_index.get(user_id)
        if history is not None:
            entries = [self.resolve(h, f"{where}history[{n}]") for n, h in enumerate(history)]
            user = None  # an override replaces what the backbone knows about the user too
        else:
            if user is None and not stored:
                raise UnknownUser(user_id, where.rstrip("."))
            entries = self._dataset_history(user) + [self.resolve(e, "stored event") for e in stored]
        liked = [e.index for e in entries if e.index is not None and (e.rating is None or e.rating >= LIKE_MIN)]
        seen = {e.index for e in entries if e.index is not None}
        start = time.perf_counter()
        if candidates is None:
            found = self.generator.candidates(user, liked, num_candidates, exclude=seen)
            cands = candidates_from_items(self.dataset, [s.item for s in found], [s.score for s in found])
        else:
            cands = self._given_candidates(user, liked, candidates, f"{where}{candidates_field}")
        # the prompt sees the most recent history_max entries (the ranker trims further to its
        # token budget); exclusion and the backbone query use all of it
        recent = entries[-self.history_max:]
        profile = profile_from_items(user_id, recent)
        return Prepared(profile, cands, time.perf_counter() - start)

    def _dataset_history(self, user: int | None) -> list[_Resolved]:
        if user is None or user not in self.split.users:
            return []
        ds = self.dataset
        return [_Resolved(ds.item_ids[e.item], ds.titles[e.item], e.item, e.rating, ds.genres[e.item])
                for e in self.split.users[user].events]

    def _given_candidates(self, user: int | None, liked: list[int], refs: Sequence[ItemRef], where: str) -> list[Candidate]:
        resolved, ids = [], set()
        for n, ref in enumerate(refs):
            r = self.resolve(ref, f"{where}[{n}]")
            if r.item_id in ids:
                raise DuplicateItem(r.item_id, f"{where}[{n}]")
            ids.add(r.item_id)
            resolved.append(r)
        known = [r.index for r in resolved if r.index is not None]
        scores = iter(self.generator.score(user, liked, known).tolist() if known else [])
        return candidates_from_named(resolved, [next(scores) if r.index is not None else None for r in resolved])
