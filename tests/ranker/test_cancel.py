"""Abandoned work stops (issue 14): the engine skips the passes of prompts nobody waits for
any more, the ranker serves those requests the fallback, and the others' scores do not move.

Real SmolLM2 (float32, so "unchanged" can be checked tightly); the forward passes are
watched by wrapping the engine's own pass functions.
"""

from __future__ import annotations

import numpy as np
import pytest

from ranker.engines.base import ScoringPrompt, accepts_keep
from ranker.engines.hf import HFEngine
from ranker.ranker import CANCELLED, Ranker, RankerConfig, RankRequest
from ranker.types import Candidate, HistoryEntry, UserProfile

SPLIT = "\u2063SPLIT\u2063"
LABELS = ("Yes", "No")


def _prompts(engine: HFEngine, users: int, per_user: int = 3) -> list[ScoringPrompt]:
    out = []
    for u in range(users):
        shared = f"User {u} liked: " + ", ".join(f"Film {u}-{i}" for i in range(8)) + ".\n"
        for c in range(per_user):
            prefix, suffix = engine.chat_template("You rank movies.", shared + SPLIT + f"Enjoy film {c}? Yes or No.") \
                .split(SPLIT)
            out.append(ScoringPrompt(prefix, suffix))
    return out


class PassLog:
    """Records the token ids each forward pass ran (prefill batches and packed rows)."""

    def __init__(self, engine: HFEngine, monkeypatch: pytest.MonkeyPatch, after_first=None) -> None:
        self.passes: list[list[int]] = []
        self.after_first = after_first
        prefill, rows = engine._prefill, engine._score_rows

        def logged_prefill(prefixes, stems):
            self.passes.append([t for p in prefixes for t in p])
            out = prefill(prefixes, stems)
            self._tick()
            return out

        def logged_rows(kv, slots, lens, width, packed, label_ids):
            self.passes.append([t for row in packed for s in row for t in s])
            out = rows(kv, slots, lens, width, packed, label_ids)
            self._tick()
            return out

        monkeypatch.setattr(engine, "_prefill", logged_prefill)
        monkeypatch.setattr(engine, "_score_rows", logged_rows)

    def _tick(self) -> None:
        if len(self.passes) == 1 and self.after_first is not None:
            self.after_first()


def test_hf_engine_takes_keep_and_test_doubles_without_it_still_work(hf_engine: HFEngine) -> None:
    assert accepts_keep(hf_engine)

    class Old:
        def score(self, prompts, labels):
            return None

    assert not accepts_keep(Old())


def test_unwanted_prompts_are_not_run_and_the_rest_score_as_before(hf_engine, monkeypatch) -> None:
    prompts = _prompts(hf_engine, users=3)
    full = hf_engine.score(prompts, LABELS)
    # one prefix per pass and one pack per pass, so every user's work is a pass of its own
    monkeypatch.setattr(hf_engine, "max_batch_tokens", 64)
    log = PassLog(hf_engine, monkeypatch)
    dropped = set(range(3, 6))  # user 1's three prompts
    part = hf_engine.score(prompts, LABELS, keep=lambda i: i not in dropped)
    assert np.isnan(part.logprobs[sorted(dropped)]).all()
    kept = [i for i in range(len(prompts)) if i not in dropped]
    np.testing.assert_allclose(part.logprobs[kept], full.logprobs[kept], atol=1e-4)
    user1_prefix = hf_engine.encode(prompts[3])[0]
    assert all(p != user1_prefix for p in log.passes)  # its prefix never ran
    assert part.calls == len(log.passes) == 4  # users 0 and 2: a prefill and a pack each
    assert part.forward_tokens < full.forward_tokens
    assert hf_engine.score(prompts, LABELS, keep=lambda i: False).calls == 0


def test_cancelled_between_passes_its_later_passes_never_run(hf_engine, monkeypatch) -> None:
    prompts = _prompts(hf_engine, users=2)
    monkeypatch.setattr(hf_engine, "max_batch_tokens", 64)  # each prefix and each pack a pass of its own
    cancelled = {"user0": False}
    log = PassLog(hf_engine, monkeypatch, after_first=lambda: cancelled.update(user0=True))
    # prefixes run shortest first: make user 0 the one whose prefix ran in pass 1
    out = hf_engine.score(prompts, LABELS, keep=lambda i: not (cancelled["user0"] and i < 3))
    first_prefix = log.passes[0]
    user0_prefix, user1_prefix = hf_engine.encode(prompts[0])[0], hf_engine.encode(prompts[3])[0]
    owner = {tuple(user0_prefix): 0, tuple(user1_prefix): 1}[tuple(first_prefix)]
    if owner == 0:  # cancelled right after its prefix: none of its suffixes ran
        assert np.isnan(out.logprobs[:3]).all() and np.isfinite(out.logprobs[3:]).all()
        assert len(log.passes) == 3  # user 0's prefill, user 1's prefill, user 1's pack
    else:  # user 1 went first; user 0's prefix never ran at all
        assert all(p != user0_prefix for p in log.passes[1:])
        assert np.isnan(out.logprobs[:3]).all() and np.isfinite(out.logprobs[3:]).all()


def _request(user: str, titles: list[str]) -> RankRequest:
    history = [HistoryEntry(f"h{i}", f"Old Film {user}-{i} (1990)", 5.0) for i in range(6)]
    cands = [Candidate(f"c{i}", t, backbone_score=float(len(titles) - i)) for i, t in enumerate(titles)]
    return RankRequest(UserProfile(user, tuple(history)), cands, k=3)


def test_ranker_serves_the_fallback_to_a_cancelled_request_and_the_same_scores_to_the_rest(hf_engine) -> None:
    ranker = Ranker(hf_engine, RankerConfig(pairwise_budget=1, listwise_shuffles=1, history_token_budget=64))
    reqs = [_request(u, ["Heat (1995)", "Fargo (1996)", "Toy Story (1995)"]) for u in ("a", "b", "c")]
    plain = ranker.rank_many(reqs)
    seen: list[int] = []

    def is_cancelled(i: int) -> bool:
        seen.append(i)
        return i == 1

    mixed = ranker.rank_many(reqs, is_cancelled=is_cancelled)
    assert mixed[1].degraded and mixed[1].degraded_reason == CANCELLED and mixed[1].forward_tokens == 0
    for i in (0, 2):
        assert not mixed[i].degraded
        assert [it.item_id for it in mixed[i].items] == [it.item_id for it in plain[i].items]
        np.testing.assert_allclose([it.score for it in mixed[i].items], [it.score for it in plain[i].items],
                                   atol=1e-4)
    assert seen  # asked
    assert sum(r.forward_tokens for r in mixed) < sum(r.forward_tokens for r in plain)


def test_estimate_tokens_is_what_the_engine_runs(hf_engine) -> None:
    ranker = Ranker(hf_engine, RankerConfig(pairwise_budget=1, listwise_shuffles=1, history_token_budget=64))
    req = _request("e", ["Heat (1995)", "Fargo (1996)", "Toy Story (1995)"])
    assert ranker.estimate_tokens(req) == ranker.rank(req).forward_tokens
