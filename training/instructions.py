"""The instruction dataset: pointwise, pairwise and listwise examples (docs/method.md §5, §6).

Every example is rendered with the ranker's own prompt builders (``ranker.prompts``) and
hints (``ranker.hints``), so training text and serving text cannot drift apart.

Leakage rules (the reference's pointwise hint read held-out ratings):
- targets and history come from the train period only: ``UserSplit.context("train")``,
  the events before the validation like;
- negatives are items the user never rated at any time, so a held-out (validation/test)
  item never appears, not even as a negative;
- hints come from a backbone trained on the train split only (``ensure_backbone``).

Each sampled draw of a user yields one example per task (when the user is eligible), so a
user drawn c times gives c examples per task with different targets, negatives and orders.

A row (one JSON line): task, user_id, system, shared, specific (the ``ranker.types.Prompt``
parts), answer (the target text), labels (the tokens serving reads), hint (or null),
history (item ids the prompt's history was drawn from; the prompt shows the most recent
that fit its budget), items (candidate item ids in shown order), plus per task: ratings
(pointwise / listwise), first_preferred and negative ("dislike" | "hard" | "random";
pairwise), answer_items (listwise, best first).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from candidate_gen.base import NUM_CANDIDATES
from candidate_gen.split import Event, Split
from ranker import hints as H
from ranker import prompts as P
from ranker.modes.registry import MODE_REGISTRY
from ranker.types import MODES, Candidate, UserProfile
from stack.profiles import candidates_from_items, profile_from_events
from training.data_io import EXAMPLES_FILE, MANIFEST_FILE, write_json_atomic, write_jsonl_atomic

log = logging.getLogger(__name__)

FORMAT = "recranker-instructions/1"


@dataclass(frozen=True)
class InstructionConfig:
    tasks: tuple[str, ...] = MODES  # which of pointwise / pairwise / listwise to build
    hints: bool = True  # backbone hints in the prompts (switch off for the ablation)
    hard_negative_ratio: float = 0.5  # share of negatives drawn from the backbone's top unseen items
    hard_pool: int = 50  # hard negatives come from the backbone's top-`hard_pool` unseen items
    num_candidates: int = NUM_CANDIDATES  # pointwise: size of the candidate set its rank hint refers to (as served)
    pairwise_dislike_ratio: float = 0.5  # pairwise: chance the negative is a disliked item (when any)
    listwise_fives: int = 3  # listwise rated candidates: items rated 5 ...
    listwise_fours: int = 2  # ... and rated 4 (shortfalls are filled from the other grade)
    listwise_negatives: int = 5  # listwise unrated candidates
    min_history: int = 1  # events left in the history after removing the example's items
    prompt: P.PromptConfig = field(default_factory=P.PromptConfig)  # same budget as serving

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in MODES]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {MODES}, got {self.tasks!r}")
        for name in ("hard_negative_ratio", "pairwise_dislike_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.hard_pool < 1 or self.num_candidates < 2 or self.min_history < 0:
            raise ValueError("hard_pool must be >= 1, num_candidates >= 2 and min_history >= 0")
        if self.listwise_fives < 0 or self.listwise_fours < 0 or self.listwise_rated < 1:
            raise ValueError("listwise_fives and listwise_fours must be >= 0 with at least one rated item")
        if self.listwise_rated + self.listwise_negatives > P.MAX_LISTWISE:
            raise ValueError(f"listwise shows at most {P.MAX_LISTWISE} candidates")
        if self.prompt.catalogue:  # its questions name the candidates of one whole request by letter
            raise ValueError("the catalogue prompt layout needs request-shaped examples: "
                             "use `recranker instructions requests --layout catalogue`")

    @property
    def listwise_rated(self) -> int:
        return self.listwise_fives + self.listwise_fours


# ---- per-user context ------------------------------------------------------------------


class _User:
    """What one user's examples are built from: train-period events, forbidden items,
    and the backbone's hard-negative pool (computed once per user)."""

    def __init__(self, split: Split, backbone, u: int, cfg: InstructionConfig):
        us = split.users[u]
        self.u, self.backbone, self.ds = u, backbone, split.dataset
        self.context: list[Event] = us.context("train")
        # every item the user ever rated (held-out ones included) is never a negative
        self.forbidden = np.zeros(self.ds.n_items, dtype=bool)
        self.forbidden[[e.item for e in us.events]] = True
        likes = [e.item for e in self.context if e.liked]
        self.liked = set(likes)
        scores = np.asarray(backbone.item_vectors() @ backbone.query(u, likes), dtype=np.float64)
        scores[self.forbidden] = -np.inf
        top = np.argsort(-scores, kind="stable")[: cfg.hard_pool]
        self.hard = top[np.isfinite(scores[top])]
        self.n_free = int((~self.forbidden).sum())

    def negatives(self, k: int, ratio: float, rng: np.random.Generator) -> list[tuple[int, str]]:
        """k distinct unrated items as (item, "hard"|"random")."""
        if k > self.n_free:
            raise ValueError(f"user {self.ds.user_ids[self.u]} has only {self.n_free} unrated items, need {k}")
        out: dict[int, str] = {}
        while len(out) < k:
            if len(self.hard) and rng.random() < ratio:
                item, kind = int(self.hard[rng.integers(len(self.hard))]), "hard"
            else:
                item, kind = int(rng.integers(self.ds.n_items)), "random"
                if self.forbidden[item]:
                    continue
            out.setdefault(item, kind)
        return list(out.items())

    def profile(self, drop: set[int]) -> tuple[UserProfile, list[int]]:
        """The train-period history minus the example's own items (oldest first)."""
        kept = [e for e in self.context if e.item not in drop]
        return profile_from_events(self.ds, self.ds.user_ids[self.u], kept), [e.item for e in kept]

    def candidates(self, items: Sequence[int], history: Sequence[int], with_scores: bool) -> list[Candidate]:
        scores = None
        if with_scores:
            likes = [i for i in history if i in self.liked]
            scores = self.backbone.score(self.u, likes, list(items))
        return candidates_from_items(self.ds, items, scores)


# ---- the three tasks -------------------------------------------------------------------


def _row(task: str, user: _User, prompt, answer: str, history: list[int], hint: str | None, **extra) -> dict:
    ds = user.ds
    return {
        "task": task,
        "user_id": ds.user_ids[user.u],
        "system": prompt.system,
        "shared": prompt.shared,
        "specific": prompt.specific,
        "answer": answer,
        "labels": list(prompt.labels),
        "hint": hint,
        "history": [ds.item_ids[i] for i in history],
        **extra,
    }


def pointwise_example(user: _User, cfg: InstructionConfig, rng: np.random.Generator, count_tokens) -> dict | None:
    """One train-period event as the target; its rating is the answer."""
    if len(user.context) < 1 + cfg.min_history:
        return None
    target = user.context[int(rng.integers(len(user.context)))]
    profile, history = user.profile({target.item})
    if len(history) < cfg.min_history:  # the user rated the target item more than once
        return None
    # the rank hint refers to a served-like candidate set: the target among negatives
    others = [i for i, _ in user.negatives(cfg.num_candidates - 1, cfg.hard_negative_ratio, rng)]
    cands = user.candidates([target.item, *others], history, cfg.hints)
    hint = H.pointwise_hint(cands[0], cands) if cfg.hints else None
    prompt = P.pointwise_prompt(profile, cands[0], hint, config=cfg.prompt, count_tokens=count_tokens)
    # the answer is a whole star 1..5: half stars (0.5..5.0 scales) round half up, 0.5 becomes 1
    rating = float(min(5, max(1, int(target.rating + 0.5))))
    return _row("pointwise", user, prompt, P.pointwise_answer(rating), history, hint,
                items=[cands[0].item_id], ratings=[target.rating])


def pairwise_example(user: _User, cfg: InstructionConfig, rng: np.random.Generator, count_tokens) -> dict | None:
    """A liked train-period item against a disliked one or an unrated negative, in random order."""
    liked = [e for e in user.context if e.liked]
    if not liked:
        return None
    pos = liked[int(rng.integers(len(liked)))]
    disliked = [e for e in user.context if e.disliked]
    if disliked and rng.random() < cfg.pairwise_dislike_ratio:
        neg, kind = disliked[int(rng.integers(len(disliked)))].item, "dislike"
    else:
        neg, kind = user.negatives(1, cfg.hard_negative_ratio, rng)[0]
    profile, history = user.profile({pos.item, neg})
    if len(history) < cfg.min_history:
        return None
    first_preferred = bool(rng.random() < 0.5)  # position shifting: label and hint follow the order
    order = [pos.item, neg] if first_preferred else [neg, pos.item]
    first, second = user.candidates(order, history, cfg.hints)
    hint = H.pairwise_hint(first, second) if cfg.hints else None
    prompt = P.pairwise_prompt(profile, first, second, hint, config=cfg.prompt, count_tokens=count_tokens)
    return _row("pairwise", user, prompt, P.pairwise_answer(first_preferred), history, hint,
                items=[first.item_id, second.item_id], first_preferred=first_preferred, negative=kind)


def _pick_rated(user: _User, cfg: InstructionConfig, rng: np.random.Generator) -> list[Event] | None:
    """Distinct train-period likes: `listwise_fives` rated 5 and `listwise_fours` rated
    below 5; a shortfall in one grade is filled from the other."""
    by_item: dict[int, Event] = {}
    for e in user.context:
        if e.liked:
            by_item[e.item] = e  # the latest rating of a re-rated item counts
    pool = [by_item[int(i)] for i in rng.permutation(sorted(by_item))]
    fives = [e for e in pool if e.rating >= 5]
    fours = [e for e in pool if e.rating < 5]
    n5 = min(len(fives), cfg.listwise_fives + max(0, cfg.listwise_fours - len(fours)))
    chosen = fives[:n5] + fours[: cfg.listwise_rated - n5]
    return chosen if len(chosen) == cfg.listwise_rated else None


def listwise_example(user: _User, cfg: InstructionConfig, rng: np.random.Generator, count_tokens) -> dict | None:
    """Rated train-period likes among unrated negatives, shown shuffled; answer = the rated
    ones best first (ties in random order). Answer items are removed from the history."""
    rated = _pick_rated(user, cfg, rng)
    if rated is None:
        return None
    negs = [i for i, _ in user.negatives(cfg.listwise_negatives, cfg.hard_negative_ratio, rng)]
    profile, history = user.profile({e.item for e in rated} | set(negs))
    if len(history) < cfg.min_history:
        return None
    rating = {e.item: e.rating for e in rated}
    shown = [int(i) for i in rng.permutation([e.item for e in rated] + negs)]
    cands = user.candidates(shown, history, cfg.hints)
    idents = P.listwise_identifiers(len(shown))
    tie = rng.random(len(shown))
    best = sorted((j for j, i in enumerate(shown) if i in rating), key=lambda j: (-rating[shown[j]], tie[j]))
    answer_ids = [idents[j] for j in best[: P.LISTWISE_TOP_N]]
    hint = H.listwise_hint(cands, idents) if cfg.hints else None
    prompt = P.listwise_prompt(profile, cands, hint, config=cfg.prompt, count_tokens=count_tokens)
    return _row("listwise", user, prompt, P.listwise_answer(answer_ids), history, hint,
                items=[c.item_id for c in cands], ratings=[rating.get(i) for i in shown],
                answer_items=[cands[j].item_id for j in best[: P.LISTWISE_TOP_N]])


# The training-example hook of each mode of the registry (ranker.modes.registry); a mode
# added there without a builder here fails at import, not halfway through a dataset.
BUILDERS: dict[str, Callable[..., dict | None]] = {
    "pointwise": pointwise_example,
    "pairwise": pairwise_example,
    "listwise": listwise_example,
}
if set(BUILDERS) != set(MODE_REGISTRY):
    raise ImportError(f"instruction builders {sorted(BUILDERS)} differ from the mode registry {sorted(MODE_REGISTRY)}")


# ---- the dataset ------------------------------------------------------------------------


def _draws(sampled) -> list[int]:
    users = getattr(sampled, "users", sampled)
    return [int(u) for u in users]


def check_alignment(split: Split, loaded) -> None:
    """The backbone artifact must index users and items exactly as the dataset does."""
    ds = split.dataset
    trained_on = (getattr(loaded, "meta", None) or {}).get("fingerprint")
    if trained_on is not None and trained_on != ds.fingerprint:
        raise ValueError(f"backbone was trained on other data than {ds.name!r} (fingerprint differs): retrain it")
    for name, ours in (("item_ids", ds.item_ids), ("user_ids", ds.user_ids)):
        theirs = getattr(loaded, name, None)
        if theirs is not None and list(theirs) != list(ours):
            raise ValueError(f"backbone artifact {name} differ from dataset {ds.name!r}: retrain the backbone")
    n = loaded.backbone.item_vectors().shape[0]
    if n != ds.n_items:
        raise ValueError(f"backbone has {n} item vectors, dataset {ds.name!r} has {ds.n_items} items")


def build_instructions(
    split: Split,
    loaded_backbone,
    sampled_users,
    config: InstructionConfig = InstructionConfig(),
    seed: int = 0,
    count_tokens: Callable[[str], int] = P.approx_token_count,
) -> list[dict]:
    """Examples for every draw in ``sampled_users`` (a SampledUsers or a list of user
    indices), one per task in ``config.tasks`` when the user is eligible.

    ``loaded_backbone``: ``candidate_gen.artifacts.LoadedBackbone`` (or anything with
    ``.backbone``), trained on the train split. ``count_tokens``: the history budget's token
    counter; pass the serving tokenizer's (``HFEngine.count_tokens``) to cut histories
    exactly as serving does.
    """
    check_alignment(split, loaded_backbone)
    rng = np.random.default_rng(seed)
    users: dict[int, _User] = {}
    rows: list[dict] = []
    for u in _draws(sampled_users):
        if u not in split.users:
            raise ValueError(f"sampled user index {u} is not in the split")
        if u not in users:
            users[u] = _User(split, loaded_backbone.backbone, u, config)
        for task in config.tasks:
            row = BUILDERS[task](users[u], config, rng, count_tokens)
            if row is not None:
                rows.append(row)
    log.info("built %d examples %s from %d draws", len(rows), dict(Counter(r["task"] for r in rows)), len(_draws(sampled_users)))
    return rows


def backbone_fingerprint(backbone) -> str:
    """Short content hash of a backbone's vectors: names the exact trained model used for
    hints and hard negatives (the artifact's own "fingerprint" is the data's)."""
    h = hashlib.sha256(np.ascontiguousarray(backbone.item_vectors(), dtype=np.float32).tobytes())
    users = backbone.user_embeddings()
    if users is not None:
        h.update(np.ascontiguousarray(users, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def dataset_manifest(rows: Sequence[dict], split: Split, loaded_backbone, sampled_users, config: InstructionConfig, seed: int) -> dict:
    """How the dataset was made: enough to tell two datasets apart and to rebuild one."""
    meta = dict(getattr(loaded_backbone, "meta", None) or {})
    draws = _draws(sampled_users)
    return {
        "format": FORMAT,
        "n_examples": len(rows),
        "counts": {t: sum(r["task"] == t for r in rows) for t in config.tasks},
        "seed": seed,
        "dataset": split.dataset.name,
        "data_fingerprint": split.dataset.fingerprint,
        "backbone": {
            "name": loaded_backbone.backbone.name,
            "fingerprint": backbone_fingerprint(loaded_backbone.backbone),
            "trained_on_fingerprint": meta.get("fingerprint"),
            **{k: meta[k] for k in ("seed", "created", "config", "validation") if k in meta},
        },
        "sampling": {
            "method": getattr(sampled_users, "method", "given"),
            "seed": getattr(sampled_users, "seed", None),
            "n_draws": len(draws),
            "n_unique": len(set(draws)),
        },
        "hints": config.hints,
        "config": asdict(config),
    }


def write_dataset(rows: Sequence[dict], manifest: dict, out_dir: Path) -> Path:
    """``out_dir/examples.jsonl`` + ``out_dir/manifest.json``, each written atomically
    (the manifest last, so its presence means the examples are complete)."""
    if not rows:
        raise ValueError("no examples to write: no sampled user was eligible for any task")
    out_dir = Path(out_dir)
    write_jsonl_atomic(out_dir / EXAMPLES_FILE, rows)
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    log.info("wrote %d examples to %s", len(rows), out_dir)
    return out_dir
