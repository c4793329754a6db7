"""Domain dataclasses shared by prompts, modes, engines, the ensemble and the facade."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pointwise", "pairwise", "listwise"]
MODES: tuple[Mode, ...] = ("pointwise", "pairwise", "listwise")


@dataclass(frozen=True)
class HistoryEntry:
    item_id: str
    title: str
    rating: float | None = None  # None when only "liked" is known (e.g. a click event)
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserProfile:
    user_id: str
    history: tuple[HistoryEntry, ...] = ()  # oldest first


@dataclass(frozen=True)
class Candidate:
    item_id: str
    title: str
    backbone_score: float | None = None  # None for items the backbone has never seen
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prompt:
    """What to ask, before chat formatting: shared text first, candidate-specific text last."""

    system: str
    shared: str  # instructions + user history: identical across a request's prompts
    specific: str  # candidate text + question
    labels: tuple[str, ...]  # the answer tokens we read probabilities for
    # characters of ``shared`` that depend on the user alone (instructions + history) and
    # repeat in that user's next request with other candidates; 0 when the user part is
    # all of ``shared`` (the inline layout) or unknown
    stem: int = 0


@dataclass
class ModeScores:
    mode: Mode
    scores: dict[str, float]  # item_id -> raw mode score (higher = better)
    llm_calls: int = 0
    forward_tokens: int = 0
    label_mass: float = 0.0  # mean probability mass the labels received


@dataclass
class RankedItem:
    item_id: str
    title: str
    score: float  # hybrid score
    mode_scores: dict[str, float] = field(default_factory=dict)  # normalised per mode
    backbone_score: float | None = None


@dataclass
class RankResult:
    items: list[RankedItem]
    modes: tuple[Mode, ...]
    degraded: bool = False
    degraded_reason: str | None = None
    llm_calls: int = 0
    forward_tokens: int = 0
    label_mass: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
