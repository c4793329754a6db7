"""Request-shaped instruction examples: what the model is tuned on is what it is served.

One example is one ranking request as the service sends it: a user's history (the one
shared prefix), ten candidates from a backbone, and every question of the three tasks
about them — a pointwise rating per candidate, pairwise comparisons asked in both orders,
listwise rankings in rotated orders (position shifting) — each with its answer label.
Training runs the prefix once per request and all questions packed on top of it
(``training.packing``), exactly as the engine scores them, so one request yields ~20
supervised answers for the price of ~1.5k tokens.

Where the examples come from (docs/method.md, "Training data"):
- targets are the last two likes before each user's validation like, and candidates and
  hints come from a backbone trained on ``candidate_gen.split.one_like_earlier(split)``,
  which has never seen those targets. A backbone trained on the targets themselves puts
  them first far more often than it will ever put a test item first (measured: LightGCN
  0.55 vs 0.19), and a model tuned on such hints learns to copy them;
- negatives are the backbone's own top unseen items (the candidates the model meets when
  served); a target the backbone ranks below ``pool`` is skipped, since such an item is
  never a served candidate;
- hints are dropped for a share of the requests, so one adapter serves hints on and off.
Targets, history and negatives are all from before the validation like: nothing held
out for evaluation is ever seen, not even as a negative.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from candidate_gen.artifacts import LoadedBackbone, backbone_dir, load_backbone, save_backbone
from candidate_gen.split import Split, one_like_earlier
from candidate_gen.train import train_backbone
from ranker import hints as H
from ranker import prompts as P
from ranker.modes import listwise, pointwise
from stack.profiles import candidates_from_items, profile_from_events
from ranker.types import Candidate, Prompt, UserProfile

log = logging.getLogger(__name__)

FORMAT = "recranker-requests/1"
SHIFTED = "one-like-earlier"


@dataclass(frozen=True)
class RequestExampleConfig:
    n_candidates: int = 10  # as served
    pool: int = 30  # negatives from the backbone's top-`pool` unseen items; targets below it are skipped
    pairwise_pairs: int = 5  # target vs this many negatives, each pair asked in both orders
    listwise_shuffles: int = 3  # rotated orders, as served
    negative_rating: int = 2  # pointwise answer for a candidate that is not the next like
    hint_dropout: float = 0.5  # share of requests rendered without hints
    prompt: P.PromptConfig = field(default_factory=P.PromptConfig)

    def __post_init__(self) -> None:
        if not 2 <= self.n_candidates <= P.MAX_LISTWISE:
            raise ValueError(f"n_candidates must be in 2..{P.MAX_LISTWISE}, got {self.n_candidates}")
        if self.pool < self.n_candidates:
            raise ValueError(f"pool ({self.pool}) must be >= n_candidates ({self.n_candidates})")
        if not 0 <= self.pairwise_pairs < self.n_candidates or self.listwise_shuffles < 1:
            raise ValueError("pairwise_pairs must be in 0..n_candidates-1 and listwise_shuffles >= 1")
        if not 0.0 <= self.hint_dropout <= 1.0:
            raise ValueError(f"hint_dropout must be in [0, 1], got {self.hint_dropout}")
        P.pointwise_answer(self.negative_rating)  # a valid 1..5 label


def shifted_backbone(home: Path, split: Split, model: str, seed: int = 0) -> LoadedBackbone:
    """The backbone trained on ``one_like_earlier(split)``, loaded from ``home`` or trained
    and saved there once (beside the served backbones, under '<dataset>-one-like-earlier')."""
    ds = split.dataset
    folder = backbone_dir(home, f"{ds.name}-{SHIFTED}", model)
    if folder.exists():
        loaded = load_backbone(folder)
        if loaded.meta.get("fingerprint") == ds.fingerprint and loaded.meta.get("split") == SHIFTED:
            return loaded
    backbone, metrics = train_backbone(one_like_earlier(split), model, seed=seed)
    meta = {"dataset": ds.name, "fingerprint": ds.fingerprint, "split": SHIFTED, "model": model, "seed": seed,
            **{k: metrics[k] for k in ("config", "best_epoch", "validation", "train_seconds")}}
    save_backbone(backbone, folder, meta, item_ids=ds.item_ids, user_ids=ds.user_ids)
    return load_backbone(folder)


@dataclass(frozen=True)
class Target:
    user: int
    position: int  # index of the target like in the user's events (history = events before it)


def targets_of(shifted: Split) -> list[Target]:
    """The shifted split's validation and test likes: two targets per user with enough likes."""
    out = []
    for u, s in shifted.users.items():
        out += [Target(u, p) for p in (s.valid_pos, s.test_pos) if p is not None]
    return out


def _question(prompt: Prompt, answer: str, mode: str) -> dict:
    return {"mode": mode, "specific": prompt.specific, "labels": list(prompt.labels), "answer": answer}


def request_example(
    split: Split,
    backbone,
    target: Target,
    cfg: RequestExampleConfig,
    rng: np.random.Generator,
    count_tokens: Callable[[str], int] = P.approx_token_count,
    never: frozenset[int] = frozenset(),
) -> dict | None:
    """One request-shaped example for ``target``, or None when the backbone ranks the
    target below ``cfg.pool`` (it would never be a served candidate). ``never``: items that
    must not be candidates (all items the user ever rated, held-out ones included)."""
    ds = split.dataset
    events = split.users[target.user].events
    past, item = events[: target.position], events[target.position].item
    likes = [e.item for e in past if e.liked]
    scores = np.asarray(backbone.item_vectors() @ backbone.query(target.user, likes), dtype=np.float64)
    target_score = scores[item]
    # never a candidate: what the user rated before the target, and every item the user
    # rates at any time (``never``): a later like shown as a negative would teach the model
    # to push down exactly the items held out for evaluation
    scores[[e.item for e in past] + sorted(never)] = -np.inf
    scores[item] = target_score
    pool = [int(i) for i in np.argsort(-scores, kind="stable")[: cfg.pool] if np.isfinite(scores[i])]
    if item not in pool:
        return None
    negatives = [pool[k] for k in rng.permutation(len(pool)) if pool[k] != item][: cfg.n_candidates - 1]
    items = [item, *negatives]
    shown = [items[k] for k in rng.permutation(len(items))]  # input order carries no label
    cands = candidates_from_items(ds, shown, scores[shown].tolist())
    user = profile_from_events(ds, ds.user_ids[target.user], past)
    hints = bool(rng.random() >= cfg.hint_dropout)
    shared = P.shared_text(user, cfg.prompt, count_tokens, cands, hints)
    questions = _questions(user, cands, ds.item_ids[item], events[target.position].rating, hints, cfg, rng,
                           count_tokens, shared)
    ranked = sorted(range(len(shown)), key=lambda k: -scores[shown[k]])
    return {
        "format": FORMAT,
        "user_id": user.user_id,
        "system": P.system_text(cfg.prompt),
        "shared": shared,
        "questions": questions,
        "items": [c.item_id for c in cands],
        "target": ds.item_ids[item],
        "target_backbone_rank": ranked.index(shown.index(item)) + 1,
        "hints": hints,
        "history": [ds.item_ids[e.item] for e in past],
    }


def _questions(user: UserProfile, cands: Sequence[Candidate], target: str, rating: float, hints: bool,
               cfg: RequestExampleConfig, rng: np.random.Generator, count_tokens, shared: str) -> list[dict]:
    """Every question of the three tasks about one request, with its answer."""
    common = {"hints": hints, "config": cfg.prompt, "count_tokens": count_tokens, "shared": shared}
    idents = P.identifiers_for(cands, cfg.prompt)  # None: inline layout, candidates named by title
    out = []
    point = pointwise.plan(user, cands, **common)  # exactly as served: one prompt per candidate
    for prompt, (item_id,) in zip(point.prompts, point.keys):
        label = P.pointwise_answer(round(rating) if item_id == target else cfg.negative_rating)
        out.append(_question(prompt, label, "pointwise"))
    by_id = {c.item_id: c for c in cands}
    others = [c for c in cands if c.item_id != target]
    for k in rng.permutation(len(others))[: cfg.pairwise_pairs]:
        for first, second in ((by_id[target], others[k]), (others[k], by_id[target])):
            hint = H.pairwise_hint(first, second) if cfg.prompt.question_hints(hints) else None
            prompt = P.pairwise_prompt(user, first, second, hint, config=cfg.prompt, count_tokens=count_tokens,
                                       shared=shared, idents=idents)
            out.append(_question(prompt, P.pairwise_answer(first.item_id == target), "pairwise"))
    seed = int(rng.integers(2**31))
    lists = listwise.plan(user, cands, shuffles=cfg.listwise_shuffles, seed=seed, **common)  # as served
    for prompt, shown in zip(lists.prompts, lists.keys):
        out.append(_question(prompt, P.LISTWISE_LABELS[shown.index(target)], "listwise"))
    return out


def build_request_examples(
    split: Split,
    backbones: dict[str, LoadedBackbone],
    draws: Sequence[int],
    config: RequestExampleConfig = RequestExampleConfig(),
    seed: int = 0,
    count_tokens: Callable[[str], int] = P.approx_token_count,
) -> list[dict]:
    """Examples for every draw (a user index, from adaptive sampling), one per target of the
    user and per backbone in ``backbones`` (trained on ``one_like_earlier(split)``). A user
    drawn c times gives c examples per target, with other negatives, pairs and orders."""
    rng = np.random.default_rng(seed)
    shifted = one_like_earlier(split)
    by_user: dict[int, list[Target]] = {}
    for t in targets_of(shifted):
        by_user.setdefault(t.user, []).append(t)
    rated = {u: frozenset(e.item for e in s.events) for u, s in split.users.items()}  # at any time
    rows, skipped = [], Counter()
    for u in draws:
        for name, loaded in backbones.items():
            for target in by_user.get(int(u), []):
                row = request_example(shifted, loaded.backbone, target, config, rng, count_tokens,
                                      never=rated[int(u)])
                if row is None:
                    skipped[name] += 1
                    continue
                rows.append(row | {"backbone": name})
    log.info("built %d request examples from %d draws (skipped, target below the pool: %s)",
             len(rows), len(draws), dict(skipped))
    return rows


def manifest(rows: Sequence[dict], split: Split, backbones: dict[str, LoadedBackbone], sampled, config,
             seed: int) -> dict:
    users = [int(u) for u in getattr(sampled, "users", sampled)]
    return {
        "format": FORMAT,
        "n_examples": len(rows),
        "n_questions": sum(len(r["questions"]) for r in rows),
        "per_backbone": dict(Counter(r["backbone"] for r in rows)),
        "with_hints": sum(r["hints"] for r in rows),
        "seed": seed,
        "dataset": split.dataset.name,
        "data_fingerprint": split.dataset.fingerprint,
        "backbones": {name: {k: lb.meta.get(k) for k in ("split", "best_epoch", "validation", "seed")}
                      for name, lb in backbones.items()},
        "sampling": {"method": getattr(sampled, "method", "given"), "n_draws": len(users),
                     "n_unique": len(set(users))},
        "config": asdict(config),
    }
