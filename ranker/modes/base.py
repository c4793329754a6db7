"""What every mode shares: a plan of prompts to score, and label-probability arithmetic.

A mode is split in two pure halves so that the facade can put the prompts of many
requests into one engine call: ``plan(...) -> ModePlan`` builds the prompts, and
``collect(plan, logprobs) -> ModeScores`` turns the engine's rows back into scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ranker.types import Candidate, Mode, Prompt


class ScoringError(ValueError):
    """The engine's log-probabilities are unusable (wrong shape, NaN, all labels impossible)."""


@dataclass
class ModePlan:
    mode: Mode
    labels: tuple[str, ...]  # the label set of the engine call: the same for every plan of a mode
    prompts: list[Prompt]
    keys: list[tuple] = field(default_factory=list)  # per prompt, what collect() needs to map rows back
    item_ids: list[str] = field(default_factory=list)  # every candidate of the request, input order


def request_seed(seed: int, user_id: str, candidates: Sequence[Candidate], salt: str) -> int:
    """A seed that depends on the request's content but not on the order of its candidates."""
    h = hashlib.blake2b(digest_size=8)
    for part in (str(seed), salt, user_id, *sorted(c.item_id for c in candidates)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little")


def backbone_order(candidates: Sequence[Candidate]) -> list[int]:
    """Candidate indices by backbone score, best first; unscored candidates last, input order on ties."""
    return sorted(
        range(len(candidates)),
        key=lambda i: (candidates[i].backbone_score is None, -(candidates[i].backbone_score or 0.0), i),
    )


def label_probs(logprobs: np.ndarray, n_labels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Renormalise each row over its labels: (probs (n, L), mass (n,)).

    ``mass`` is the total probability the labels had before renormalising (low = the model
    wanted to say something else). ``n_labels`` keeps only the first columns.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.ndim != 2:
        raise ScoringError(f"expected a 2-d array of log-probabilities, got shape {lp.shape}")
    if n_labels is not None:
        if n_labels > lp.shape[1]:
            raise ScoringError(f"need {n_labels} label columns, engine returned {lp.shape[1]}")
        lp = lp[:, :n_labels]
    if np.isnan(lp).any() or (lp > 1e-6).any():
        raise ScoringError("log-probabilities contain NaN or values above 0")
    top = lp.max(axis=1, keepdims=True)
    if not np.isfinite(top).all():
        raise ScoringError("a prompt gave probability 0 to every label")
    e = np.exp(lp - top)
    total = e.sum(axis=1, keepdims=True)
    mass = np.minimum(1.0, np.exp(top[:, 0]) * total[:, 0])
    return e / total, mass


def check_rows(plan: ModePlan, logprobs: np.ndarray) -> None:
    if len(logprobs) != len(plan.prompts):
        raise ScoringError(f"{plan.mode}: {len(plan.prompts)} prompts but {len(logprobs)} rows of log-probabilities")
