"""The paper's leave-one-out split on likes (docs/method.md §2).

Per user, events are ordered by (timestamp, file order). Likes are ratings >= 4,
dislikes <= 2. The last like is the test event, the one before it the validation
event, the remaining likes are training positives. Context for a held-out event is
only what happened *before* it in that order, so nothing from the future leaks in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from candidate_gen.data import Dataset

LIKE_MIN = 4.0
DISLIKE_MAX = 2.0
Stage = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class Event:
    item: int
    rating: float
    timestamp: int

    @property
    def liked(self) -> bool:
        return self.rating >= LIKE_MIN

    @property
    def disliked(self) -> bool:
        return self.rating <= DISLIKE_MAX


@dataclass
class UserSplit:
    user: int
    events: list[Event]  # chronological, all ratings
    valid_pos: int | None  # index in events of the validation like
    test_pos: int | None  # index in events of the test like
    train_likes: list[int] = field(default_factory=list)  # item indices, chronological

    def cutoff(self, stage: Stage) -> int:
        """Number of leading events visible as context at ``stage``."""
        if stage == "test":
            return self.test_pos if self.test_pos is not None else len(self.events)
        held = self.valid_pos if self.valid_pos is not None else self.test_pos
        return held if held is not None else len(self.events)

    def context(self, stage: Stage) -> list[Event]:
        return self.events[: self.cutoff(stage)]

    def held_out(self, stage: Literal["valid", "test"]) -> int | None:
        pos = self.valid_pos if stage == "valid" else self.test_pos
        return None if pos is None else self.events[pos].item

    def seen(self, stage: Stage) -> set[int]:
        """Items consumed before ``stage``'s held-out event: never recommended again."""
        return {e.item for e in self.context(stage)}


@dataclass
class Split:
    dataset: Dataset
    users: dict[int, UserSplit]

    def train_interactions(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) arrays of training likes, the only positives a backbone may see."""
        us = [u for u, s in self.users.items() for _ in s.train_likes]
        its = [i for s in self.users.values() for i in s.train_likes]
        return np.asarray(us, dtype=np.int64), np.asarray(its, dtype=np.int64)

    def eval_users(self, stage: Literal["valid", "test"]) -> list[int]:
        return [u for u, s in self.users.items() if s.held_out(stage) is not None]

    def counts(self) -> dict[str, int]:
        ev = [e for s in self.users.values() for e in s.events]
        return {
            "users": self.dataset.n_users,
            "items": self.dataset.n_items,
            "interactions": len(ev),
            "users_with_likes": sum(1 for s in self.users.values() if s.test_pos is not None),
            "likes": sum(e.liked for e in ev),
            "dislikes": sum(e.disliked for e in ev),
            "train_likes": sum(len(s.train_likes) for s in self.users.values()),
            "valid": len(self.eval_users("valid")),
            "test": len(self.eval_users("test")),
        }


def leave_one_out(ds: Dataset) -> Split:
    order = np.lexsort((np.arange(len(ds.users)), ds.timestamps, ds.users))  # by user, time, file order
    users: dict[int, UserSplit] = {}
    bounds = np.flatnonzero(np.diff(ds.users[order])) + 1
    for chunk in np.split(order, bounds):
        if len(chunk) == 0:
            continue
        u = int(ds.users[chunk[0]])
        events = [Event(int(ds.items[j]), float(ds.ratings[j]), int(ds.timestamps[j])) for j in chunk]
        users[u] = _user_split(u, events)
    return Split(ds, users)


def _user_split(u: int, events: list[Event]) -> UserSplit:
    """Last like = test, the one before = validation, earlier likes = training positives."""
    like_pos = [p for p, e in enumerate(events) if e.liked]
    test_pos = like_pos[-1] if like_pos else None
    valid_pos = like_pos[-2] if len(like_pos) >= 2 else None
    return UserSplit(u, events, valid_pos, test_pos, [events[p].item for p in like_pos[:-2]])


def one_like_earlier(split: Split) -> Split:
    """The same users with every event from their validation like on removed, split again.

    Its test like is the original's last training like and its validation like the one
    before, so a backbone trained on it has never seen either: training examples built on
    them meet that backbone's candidates and scores as the served model meets the real
    backbone's at test time (a backbone that trained on an example's target ranks it far
    higher than it will ever rank an unseen item)."""
    return Split(split.dataset, {u: _user_split(u, s.context("valid")) for u, s in split.users.items()})
