"""The ranking facade: requests in, ranked top-k out; engine failures become a degraded
(backbone-order) result, never an exception to the caller.

``rank_many`` makes ONE ``engine.score`` call for every prompt of every mode of all its
requests: a service micro-batch of N users costs one engine call, and each user's history
prefix is computed once for all three modes. ``is_cancelled`` lets a caller withdraw
requests while that call runs: engines that can (``accepts_keep``) skip their remaining
passes, and a withdrawn request gets the fallback, marked degraded.

A mode whose hybrid weight is 0 costs nothing: it is neither planned nor scored, unless the
request asks for every mode's scores (``score_all_modes``, offline evaluation). With all
mode weights 0 (weights chosen "backbone only") a request runs no LLM at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ranker.chat import to_scoring_prompt
from ranker.engines.base import Engine, accepts_keep
from ranker.ensemble import EnsembleWeights, HintWeightsMissing, WeightSet, hybrid_scores, order_by, zscore
from ranker.modes.base import ModePlan
from ranker.modes.registry import ALL_LABELS, LABEL_COLUMNS, LABEL_SETS, MODE_REGISTRY
from ranker.prompts import INLINE, PromptConfig, candidate_limit, shared_text
from ranker.types import MODES, Candidate, Mode, ModeScores, RankedItem, RankResult, UserProfile

log = logging.getLogger(__name__)

__all__ = ["LABEL_SETS", "RankRequest", "Ranker", "RankerConfig"]  # LABEL_SETS is the registry's, re-exported

STAGES = ("prompt", "llm", "ensemble")
CANCELLED = "cancelled: the caller stopped waiting before scoring finished"


@dataclass(frozen=True)
class RankerConfig:
    """The ranking defaults. These numbers are the only home of each default: the settings
    (stack.settings.Settings, RECRANKER_*) take their defaults from this dataclass."""

    pairwise_budget: int = 5  # comparisons per request, each asked in both orders (2 prompts)
    listwise_shuffles: int = 3  # shown orders per request (position shifting)
    # 200 tokens (~15-25 titles) keeps a 10-candidate request affordable on a CPU; raise it on a GPU
    history_token_budget: int = 200  # tokens of history per prompt, most recent first
    use_hints: bool = True  # backbone hints in the prompts (a request may override)
    seed: int = 0  # mixed with each request's content for pair selection and shuffles
    max_history_items: int = 50
    item: str = "movie"
    items: str = "movies"
    item_genres: bool = False  # genres in the item text: on only for an adapter tuned with them
    prompt_layout: str = INLINE  # "inline" or "catalogue": the layout the adapter was tuned on

    def __post_init__(self) -> None:
        if self.pairwise_budget < 0:
            raise ValueError(f"pairwise_budget must be >= 0, got {self.pairwise_budget}")
        if self.listwise_shuffles < 1:
            raise ValueError(f"listwise_shuffles must be >= 1, got {self.listwise_shuffles}")
        if self.history_token_budget < 1:
            raise ValueError(f"history_token_budget must be >= 1, got {self.history_token_budget}")

    @property
    def prompt_config(self) -> PromptConfig:
        return PromptConfig(self.history_token_budget, self.max_history_items, self.item, self.items, self.item_genres,
                            self.prompt_layout)


@dataclass
class RankRequest:
    user: UserProfile
    candidates: list[Candidate]
    modes: tuple[Mode, ...] = MODES
    k: int = 5
    weights: EnsembleWeights | None = None  # None: the ranker's weights for the request's hint setting
    use_hints: bool | None = None  # None: the ranker's config
    score_all_modes: bool = False  # also score modes whose weight is 0 (evaluation reads each mode)

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("a rank request needs at least one candidate")
        ids = [c.item_id for c in self.candidates]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate candidate item_id(s): {dupes[:5]}")
        self.modes = tuple(self.modes)
        bad = [m for m in self.modes if m not in MODES]
        if bad or len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes must be distinct values of {list(MODES)}, got {list(self.modes)}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@dataclass
class _Work:
    """One request on its way through rank_many."""

    request: RankRequest
    index: int  # position in rank_many's requests (what is_cancelled is asked about)
    plans: dict[Mode, ModePlan] = field(default_factory=dict)
    scores: dict[Mode, ModeScores] = field(default_factory=dict)
    failure: str | None = None
    weights: EnsembleWeights | None = None  # resolved at planning time


class Ranker:
    def __init__(
        self, engine: Engine, config: RankerConfig = RankerConfig(),
        weights: EnsembleWeights | WeightSet = EnsembleWeights(),
    ) -> None:
        self.engine = engine
        self.config = config
        # plain weights (not chosen per hint setting) serve both settings, as before
        self.weight_set = weights if isinstance(weights, WeightSet) else WeightSet(hints_on=weights)
        self._prompt_config = config.prompt_config
        self._engine_stops_early = accepts_keep(engine)
        engine.label_token_ids(ALL_LABELS)  # a tokenizer that splits a label fails here, at start-up

    # ---- public -------------------------------------------------------------------------

    @property
    def weights(self) -> EnsembleWeights:
        """The served weights with hints on (the default setting)."""
        return self.weight_set.hints_on

    @property
    def max_candidates(self) -> int | None:
        """Most candidates one request may have (None: no limit of the prompt layout's own):
        the catalogue layout names them by the letters A..T."""
        return candidate_limit(self._prompt_config.layout)

    def hints_for(self, request: RankRequest) -> bool:
        return self.config.use_hints if request.use_hints is None else request.use_hints

    def weights_for(self, request: RankRequest) -> EnsembleWeights:
        """The request's own weights, else the served ones for its hint setting; raises
        ``HintWeightsMissing`` for hints off when only hints-on weights were chosen."""
        return request.weights or self.weight_set.for_hints(self.hints_for(request))

    def modes_to_run(self, request: RankRequest, weights: EnsembleWeights | None = None) -> tuple[Mode, ...]:
        """The requested modes that affect the hybrid (weight > 0), or all with score_all_modes."""
        if request.score_all_modes:
            return request.modes
        weights = weights or self.weights_for(request)
        return tuple(m for m in request.modes if weights.of(m) > 0)

    def rank(self, request: RankRequest) -> RankResult:
        return self.rank_many([request])[0]

    def rank_many(self, requests: Sequence[RankRequest],
                  is_cancelled: Callable[[int], bool] | None = None) -> list[RankResult]:
        """Rank several requests with one engine call for all of them.

        ``is_cancelled(i)``: True once nobody waits for ``requests[i]`` any more (asked from
        this thread, between the engine's passes); its remaining work is skipped and its
        result is the fallback (degraded, reason CANCELLED)."""
        works = [_Work(r, i) for i, r in enumerate(requests)]
        timings = dict.fromkeys(STAGES, 0.0)
        t = time.perf_counter()
        for w in works:
            if is_cancelled is not None and is_cancelled(w.index):
                w.failure = CANCELLED
            else:
                self._plan(w)
        timings["prompt"] += time.perf_counter() - t
        self._score_all([w for w in works if w.failure is None], timings, is_cancelled)
        t = time.perf_counter()
        results = [self._finish(w) for w in works]
        timings["ensemble"] += time.perf_counter() - t
        for res in results:
            res.timings = dict(timings)  # batch stages: every request waited for all of them
        return results

    def fallback(self, request: RankRequest, reason: str) -> RankResult:
        """Backbone order (unscored candidates at the average), marked degraded."""
        ids = [c.item_id for c in request.candidates]
        backbone = {c.item_id: c.backbone_score for c in request.candidates}
        prior = zscore({i: s for i, s in backbone.items() if s is not None}, ids)
        return RankResult(
            items=self._top_k(request, prior, {}),
            modes=(),
            degraded=True,
            degraded_reason=reason,
        )

    def plans(self, request: RankRequest) -> dict[Mode, ModePlan]:
        """The prompts of each requested mode for one request, as ``rank`` scores them."""
        r, cfg = request, self.config
        modes = self.modes_to_run(r)
        if not modes:
            return {}  # no mode carries weight: the hybrid is the backbone prior, no LLM work
        hints = self.hints_for(r)
        # one shared part (history, and the catalogue in that layout) for all modes
        shared = shared_text(r.user, self._prompt_config, self.engine.count_tokens, r.candidates, hints)
        common = {"hints": hints, "config": self._prompt_config, "count_tokens": self.engine.count_tokens,
                  "shared": shared}
        plans: dict[Mode, ModePlan] = {}
        for mode in modes:
            spec = MODE_REGISTRY[mode]
            plans[mode] = spec.plan(r.user, r.candidates, **common, **spec.options(cfg))
        return plans

    # ---- stages -------------------------------------------------------------------------

    def _plan(self, w: _Work) -> None:
        try:
            w.weights = self.weights_for(w.request)
        except HintWeightsMissing as e:  # the service refuses these with a 422 before they get here
            w.failure = str(e)
            return
        try:
            w.plans = self.plans(w.request)
        except Exception as e:  # noqa: BLE001 - one bad request must not sink the batch
            log.exception("building prompts failed for user %s", w.request.user.user_id)
            w.failure = f"prompt building failed: {type(e).__name__}: {e}"

    def estimate_tokens(self, request: RankRequest) -> int:
        """Forward tokens ``rank`` would run for this request with no prefix-cache hit: its
        shared prefix once plus every prompt's suffix (chat markup included). Costs a
        tokenisation of the prompts (about a millisecond), no forward pass."""
        count = self.engine.count_tokens
        prefixes: set[str] = set()
        tokens = 0
        for plan in self.plans(request).values():
            for p in plan.prompts:
                sp = to_scoring_prompt(self.engine, p)
                if sp.prefix not in prefixes:
                    prefixes.add(sp.prefix)
                    tokens += count(sp.prefix)
                tokens += count(sp.suffix)
        return tokens

    def _score_all(self, works: list[_Work], timings: dict[str, float],
                   is_cancelled: Callable[[int], bool] | None = None) -> None:
        """ONE engine call for the prompts of every mode of every request, then per-request
        scores. All of a request's prompts share one prefix (the user's history), so the
        engine runs that prefix once for all three modes; the label sets of the modes are
        disjoint, so one call reads all of them and each mode keeps its own columns."""
        jobs = [(w, mode, w.plans[mode]) for w in works for mode in MODES if mode in w.plans]
        t = time.perf_counter()
        try:
            prompts = [to_scoring_prompt(self.engine, p) for _, _, plan in jobs for p in plan.prompts]
        except Exception as e:  # noqa: BLE001 - a chat template that loses the split marker
            log.exception("chat formatting failed for %d request(s)", len(works))
            return self._fail(works, f"chat formatting failed: {type(e).__name__}: {e}")
        finally:
            timings["prompt"] += time.perf_counter() - t
        counts = [len(plan.prompts) for _, _, plan in jobs]
        options = {}
        if is_cancelled is not None and self._engine_stops_early:
            owner = [w.index for (w, _, _), n in zip(jobs, counts) for _ in range(n)]
            options["keep"] = lambda i: not is_cancelled(owner[i])
        rows, tokens, calls = np.zeros((0, len(ALL_LABELS))), [0] * len(jobs), [0] * len(jobs)
        if prompts:
            t = time.perf_counter()
            try:
                batch = self.engine.score(prompts, ALL_LABELS, **options)
                rows = np.asarray(batch.logprobs)
                if rows.shape != (len(prompts), len(ALL_LABELS)):
                    raise ValueError(f"engine returned log-probabilities of shape {rows.shape}, "
                                     f"expected {(len(prompts), len(ALL_LABELS))}")
            except Exception as e:  # noqa: BLE001 - any engine failure degrades; the caller gets a result
                log.exception("scoring failed for %d request(s): serving backbone order", len(works))
                return self._fail(works, f"scoring failed: {type(e).__name__}: {e}")
            finally:
                timings["llm"] += time.perf_counter() - t
            tokens, calls = _apportion(batch.forward_tokens, counts), _apportion(batch.calls, counts)
        t = time.perf_counter()
        start = 0
        for (w, mode, plan), n, tok, cl in zip(jobs, counts, tokens, calls):
            block = rows[start:start + n, LABEL_COLUMNS[mode]]
            start += n
            if w.failure is not None:
                continue
            if is_cancelled is not None and np.isnan(block).any() and is_cancelled(w.index):
                w.failure = CANCELLED  # the engine skipped its remaining passes
                continue
            try:
                scores = MODE_REGISTRY[mode].collect(plan, block)
            except Exception as e:  # noqa: BLE001 - unusable rows for one request degrade that request only
                log.exception("%s scores unusable for user %s", mode, w.request.user.user_id)
                w.failure = f"{mode} scores unusable: {type(e).__name__}: {e}"
            else:
                scores.forward_tokens, scores.llm_calls = tok, cl
                w.scores[mode] = scores
        timings["ensemble"] += time.perf_counter() - t

    @staticmethod
    def _fail(works: list[_Work], reason: str) -> None:
        for w in works:
            w.failure = reason

    def _finish(self, w: _Work) -> RankResult:
        r = w.request
        if w.failure is not None:
            return self.fallback(r, w.failure)
        ids = [c.item_id for c in r.candidates]
        backbone = {c.item_id: c.backbone_score for c in r.candidates}
        hybrid, normalised = hybrid_scores(
            ids, {m: s.scores for m, s in w.scores.items()}, backbone, w.weights
        )
        return RankResult(
            items=self._top_k(r, hybrid, normalised),
            modes=tuple(m for m in r.modes if m in w.scores and w.scores[m].scores),
            llm_calls=sum(s.llm_calls for s in w.scores.values()),
            forward_tokens=sum(s.forward_tokens for s in w.scores.values()),
            label_mass={m: s.label_mass for m, s in w.scores.items() if s.scores},
        )

    @staticmethod
    def _top_k(r: RankRequest, scores: dict[str, float], normalised: dict[str, dict[str, float]]) -> list[RankedItem]:
        ids = [c.item_id for c in r.candidates]
        by_id = {c.item_id: c for c in r.candidates}
        backbone = {i: by_id[i].backbone_score for i in ids}
        return [
            RankedItem(
                item_id=i,
                title=by_id[i].title,
                score=scores[i],
                mode_scores={m: z[i] for m, z in normalised.items()},
                backbone_score=backbone[i],
            )
            for i in order_by(scores, ids, backbone)[: r.k]
        ]


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split an integer total in proportion to weights (largest remainder): parts sum to total."""
    wsum = sum(weights)
    if wsum == 0:
        return [0] * len(weights)
    exact = [total * w / wsum for w in weights]
    parts = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: parts[i] - exact[i])[: total - sum(parts)]:
        parts[i] += 1
    return parts
