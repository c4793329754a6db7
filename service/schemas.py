"""HTTP shapes: what the service accepts (``*In``) and what it returns (``*Out``).

Pydantic lives only here and in settings; routes convert to domain objects through the
``to_*`` helpers at the bottom, in this one place. Inputs forbid unknown fields so a typo
("candidate" for "candidates") is a 422 naming it rather than a silently ignored option.
Item ids are strings; integers are accepted and turned into strings ("242" == 242).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ranker.types import MODES, Mode
from service.catalog import HistoryRef, ItemRef
from service.store import StoredEvent
from stack.settings import CANDIDATE_LIMIT


def _id_to_str(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


# The length constraints come before the int->str validator so pydantic checks them on the
# string itself and says "characters" (after a validator it would say "items").
ItemId = Annotated[str, Field(min_length=1, max_length=128, examples=["50"]), BeforeValidator(_id_to_str)]
UserId = Annotated[str, Field(min_length=1, max_length=128, examples=["1"]), BeforeValidator(_id_to_str)]
Title = Annotated[str, Field(min_length=1, max_length=300, examples=["Star Wars (1977)"])]
Genre = Annotated[str, Field(min_length=1, max_length=40, examples=["Sci-Fi"])]
Genres = Annotated[list[Genre], Field(max_length=10, description="Genres of an item outside the catalog (catalog "
                                      "items use the catalog's own); shown to adapters tuned with genres.")]
ItemIdOrTitle = Annotated[str, BeforeValidator(_id_to_str), Field(min_length=1, max_length=300, examples=["50"])]
# Every float the API accepts or returns is finite: JSON has no Infinity/NaN, and 1e999
# parses to inf. allow_inf_nan=False turns them into a 422 naming the field.
Rating = Annotated[float, Field(ge=1, le=5, allow_inf_nan=False, description="1..5 (>= 4 counts as a like).")]
# Weights are relative (only their ratios order the items); the cap keeps every hybrid
# score finite: |z| <= sqrt(n) <= 15 for n <= 200 candidates, times 4 weights <= 1e6.
MAX_WEIGHT = 1e6
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
# Year 9999: beyond it a timestamp is a mistake (milliseconds sent as seconds, or junk).
MAX_TIMESTAMP = 253_402_300_799


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- rank ----------------------------------------------------------------------------------


class HistoryItemIn(_In):
    item_id: ItemId
    rating: Rating | None = Field(None, description="1..5; omit when only 'liked' is known (a click).")
    title: Title | None = Field(None, description="Required for items outside the catalog.")
    genres: Genres | None = None


class CandidateIn(_In):
    item_id: ItemId
    title: Title | None = Field(None, description="Required for items outside the catalog (backbone_score is then null).")
    genres: Genres | None = None


class WeightsIn(_In):
    """Hybrid weights; a field left out keeps the served default (the adapter's tuned weights)."""

    pointwise: Weight | None = None
    pairwise: Weight | None = None
    listwise: Weight | None = None
    backbone: Weight | None = Field(None, description="Weight of the backbone's own order (a prior).")

    @model_validator(mode="after")
    def _not_all_zero(self) -> WeightsIn:
        given = [v for v in (self.pointwise, self.pairwise, self.listwise, self.backbone) if v is not None]
        if len(given) == 4 and not any(given):
            raise ValueError("all weights are 0: at least one must be > 0, or nothing orders the items")
        return self


def _unique_modes(v: list[Mode]) -> list[Mode]:
    dup = sorted({m for m in v if v.count(m) > 1})
    if dup:
        raise ValueError(f"mode(s) {dup} listed more than once")
    return v


RANK_EXAMPLE = {"user_id": "1", "k": 5, "num_candidates": 10, "modes": ["pointwise", "pairwise", "listwise"]}


class RankIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RANK_EXAMPLE]})

    user_id: UserId
    history: list[HistoryItemIn] | None = Field(
        None, max_length=1000,
        description="Replaces the user's known history (dataset + posted events) for this request, oldest first.")
    candidates: list[ItemId | CandidateIn] | None = Field(
        None, description="Items to rank (catalog ids, or {item_id, title} for new items). "
        "Omitted: the backbone retrieves num_candidates items the user has not seen.")
    k: int | None = Field(None, ge=1, le=CANDIDATE_LIMIT, description="Items to return (default RECRANKER_TOP_K).")
    num_candidates: int | None = Field(None, ge=1, le=CANDIDATE_LIMIT, description="Items to retrieve when candidates is omitted.")
    modes: list[Mode] = Field(list(MODES), min_length=1, description="LLM ranking modes to combine.")
    weights: WeightsIn | None = None
    use_hints: bool | None = Field(None, description="Show the backbone's opinion in prompts (default RECRANKER_USE_HINTS).")

    _modes = field_validator("modes")(_unique_modes)


class RankedItemOut(BaseModel):
    item_id: str
    title: str
    score: Finite = Field(description="Hybrid score (higher is better).")
    mode_scores: dict[str, Finite] = Field(default_factory=dict, description="Per-mode scores, normalised per request.")
    backbone_score: Finite | None = Field(None, description="The candidate stage's score: the backbone's, blended with recency "
                                          "where the backbone chose it (docs/method.md §3); null for items the backbone "
                                          "has never seen.")


class TimingsOut(BaseModel):
    """Seconds spent per stage of this request (0 for stages that did not run)."""

    cache: float = 0.0
    retrieve: float = 0.0
    queue: float = 0.0
    prompt: float = 0.0
    llm: float = 0.0
    ensemble: float = 0.0
    total: float = 0.0


class RankOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "1",
        "items": [{"item_id": "181", "title": "Return of the Jedi (1983)", "score": 1.21,
                   "mode_scores": {"pointwise": 0.9, "pairwise": 1.3, "listwise": 1.1}, "backbone_score": 3.2}],
        "model": "smollm2-135m-instruct", "adapter": "recranker-smollm2-ml100k", "adapter_revision": "3f2a9c0d1e4b5a69",
        "backbone": "lightgcn", "degraded": False, "degraded_reason": None, "cached": False,
        "timings": {"cache": 0.0004, "retrieve": 0.002, "queue": 0.01, "prompt": 0.02, "llm": 1.8,
                    "ensemble": 0.0003, "total": 1.85},
        "llm_calls": 6, "llm_tokens": 2400, "label_mass": {"pointwise": 0.93}, "warnings": []}]})

    user_id: str
    items: list[RankedItemOut]
    model: str
    adapter: str | None = Field(description="PEFT adapter served; null = base model.")
    adapter_revision: str | None = Field(description="Content hash of the adapter's config and weights.")
    backbone: str
    degraded: bool = Field(description="True when the LLM could not rank in time: items are in backbone order.")
    degraded_reason: str | None = None
    cached: bool = False
    timings: TimingsOut
    llm_calls: int = 0
    llm_tokens: int = Field(0, description="Tokens run through the LLM for this request (0 when cached).")
    label_mass: dict[str, Finite] = Field(default_factory=dict, description="Mean probability mass of the answer labels per mode.")
    warnings: list[str] = Field(default_factory=list, description="Non-fatal problems, e.g. the user store being down.")


class BatchRankIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"requests": [{"user_id": "1", "k": 3}, {"user_id": "2", "k": 3, "modes": ["pointwise"]}]}]})

    requests: list[RankIn] = Field(min_length=1, description="At most RECRANKER_MAX_BATCH_REQUESTS.")


class BatchRankOut(BaseModel):
    results: list[RankOut] = Field(description="One result per request, in request order.")


# ---- rerank (Cohere v1/v2 and Jina shape) -----------------------------------------------------


class DocumentIn(_In):
    id: ItemId | None = Field(None, description="Catalog item id, or the id of a new item.")
    title: Title | None = None
    text: Title | None = Field(None, description="Same as title (Cohere's field name).")

    @model_validator(mode="after")
    def _id_or_text(self) -> DocumentIn:
        if self.id is None and self.title is None and self.text is None:
            raise ValueError("a document object needs an 'id', a 'title' or a 'text'")
        if self.title is not None and self.text is not None and self.title != self.text:
            raise ValueError("give 'title' or 'text', not two different strings")
        return self


class RelevantSpansIn(_In):
    mode: Literal["enabled", "disabled"]
    threshold: float | None = None
    max_spans: int | None = None

    @model_validator(mode="after")
    def _disabled_only(self) -> RelevantSpansIn:
        if self.mode == "enabled":
            raise ValueError("relevant spans are not supported: documents are items ranked for a user, "
                             "there is no query text to find spans for")
        return self


RANK_FIELDS = ("text", "title")


class RerankIn(_In):
    """What Cohere's SDKs send to /v1/rerank and /v2/rerank (every version's fields), plus the
    service's ``modes`` and ``use_hints``. Fields that do not apply to ranking items for a user
    are accepted so unmodified clients work, and say in their description what they do here."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "1", "documents": ["50", {"id": "181"}, {"id": "new-1", "title": "Dune: Part Two (2024)"},
                                     "Oppenheimer (2023)"], "top_n": 3, "return_documents": True}]})

    query: UserId = Field(description="The user id to rank for.")
    documents: list[ItemId | DocumentIn] = Field(
        min_length=1, description="A string is a catalog item id when the catalog has it, otherwise the title "
        "of a new item; an object is {id, title|text}.")
    top_n: int | None = Field(None, ge=1, description="Results to return (default: all).")
    return_documents: bool | None = Field(False, description="Echo each document (id, text) in the results.")
    model: str | None = Field(None, description="Accepted for client compatibility and ignored: the server's model ranks.")
    rank_fields: list[str] | None = Field(
        None, description="Cohere v1: the document field to rank on; only 'text' or 'title' (the same field here).")
    max_chunks_per_doc: int | None = Field(None, ge=1, description="Accepted; a document is one title, one chunk.")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="Accepted and not applied: titles are at most 300 characters and the prompts "
        "have their own token budget (RECRANKER_HISTORY_TOKEN_BUDGET).")
    relevant_spans: RelevantSpansIn | None = Field(None, description="Only mode 'disabled' is supported.")
    priority: int | None = Field(None, ge=0, description="Accepted and ignored: requests are served in arrival order.")
    modes: list[Mode] = Field(list(MODES), min_length=1)
    use_hints: bool | None = None

    _modes = field_validator("modes")(_unique_modes)

    @field_validator("rank_fields")
    @classmethod
    def _rank_fields(cls, v: list[str] | None) -> list[str] | None:
        bad = [f for f in v or [] if f not in RANK_FIELDS]
        if bad:
            raise ValueError(f"cannot rank on {bad}: documents are {{id, title|text}}; use 'text' or 'title'")
        return v


class RerankDocumentOut(BaseModel):
    id: str
    text: str


class RerankResultOut(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(ge=0, le=1, allow_inf_nan=False, description="Phi(hybrid / W), see docs/service.md: "
                                   "0.5 is the request's average candidate; monotone in hybrid_score.")
    hybrid_score: Finite = Field(description="The raw hybrid score (a weighted sum of z-scores; higher is better).")
    document: RerankDocumentOut | None = None


class ApiVersionOut(BaseModel):
    version: str


class TokensOut(BaseModel):
    input_tokens: int = Field(description="Tokens run through the LLM for this request (0 when cached).")
    output_tokens: int = Field(0, description="Always 0: scores are read from one forward pass, nothing is generated.")


class RerankMetaOut(BaseModel):
    api_version: ApiVersionOut
    tokens: TokensOut


class RerankOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "5d0c6f1be0b54d1f9d1d2b8f8a8e4c11",
        "results": [{"index": 1, "relevance_score": 0.82, "hybrid_score": 0.71},
                    {"index": 0, "relevance_score": 0.31, "hybrid_score": -0.39}],
        "meta": {"api_version": {"version": "2"}, "tokens": {"input_tokens": 812, "output_tokens": 0}},
        "model": "smollm2-135m-instruct", "adapter": "recranker-smollm2-ml100k", "degraded": False,
        "degraded_reason": None}]})

    id: str = Field(description="A fresh id for this response.")
    results: list[RerankResultOut] = Field(description="Sorted by relevance_score, best first.")
    meta: RerankMetaOut = Field(description="Nothing is billed, so no billed_units.")
    model: str
    adapter: str | None
    degraded: bool
    degraded_reason: str | None = None


class CohereErrorOut(BaseModel):
    message: str = Field(examples=["documents[0]: unknown item id 'nope' (not in the catalog): give its title"])


# ---- rerank (Hugging Face text-embeddings-inference shape) ----------------------------------


class TeiRerankIn(_In):
    """TEI's RerankRequest. ``query`` is the user id and each text is an item id or a title, as
    for /v1/rerank."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "1", "texts": ["50", "181", "Oppenheimer (2023)"], "raw_scores": False, "return_text": True}]})

    query: UserId = Field(description="The user id to rank for.")
    texts: list[ItemIdOrTitle] = Field(description="Catalog item ids, or titles of items outside the catalog.")
    raw_scores: bool = Field(False, description="false: score is the relevance score in [0, 1]; "
                                                "true: the raw hybrid score.")
    return_text: bool = Field(False, description="Echo each text as sent.")
    truncate: bool | None = Field(False, description="Accepted; titles are at most 300 characters.")
    truncation_direction: Literal["left", "right", "Left", "Right"] = Field(
        "right", description="Accepted with truncate.")
    modes: list[Mode] = Field(list(MODES), min_length=1, description="RecRanker's own: LLM modes to combine.")
    use_hints: bool | None = None

    _modes = field_validator("modes")(_unique_modes)


class TeiRankOut(BaseModel):
    index: int = Field(ge=0, description="Position of the text in the request.")
    score: float
    text: str | None = Field(None, description="Present when return_text is true.")


class TeiErrorOut(BaseModel):
    error: str = Field(examples=["`texts` cannot be empty"])
    error_type: Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


# ---- events --------------------------------------------------------------------------------


class EventIn(_In):
    item_id: ItemId
    rating: Rating | None = Field(None, description="1..5; omit for an implicit like (click, purchase).")
    timestamp: int | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="Unix seconds; default: now.")
    title: Title | None = Field(None, description="Required for items outside the catalog.")


class EventsIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "1", "events": [{"item_id": "50", "rating": 5}, {"item_id": "181", "rating": 2,
                                                                      "timestamp": 1714000000}]}]})

    user_id: UserId
    events: list[EventIn] = Field(min_length=1, description="Oldest first; at most RECRANKER_USER_HISTORY_MAX.")


class EventsOut(BaseModel):
    user_id: str
    accepted: int = Field(description="Events appended by this call.")
    stored: int = Field(description="Events now stored for the user (bounded by RECRANKER_USER_HISTORY_MAX).")
    state_version: str = Field(description="Changes with every append; part of the response cache key.")


# ---- health --------------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ComponentOut(BaseModel):
    ok: bool
    detail: str


class ReadyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": False, "components": {
        "model": {"ok": True, "detail": "smollm2-135m-instruct + recranker-smollm2-ml100k"},
        "index": {"ok": True, "detail": "exact index over 1682 items (lightgcn)"},
        "store": {"ok": False, "detail": "redis unavailable (ping: ConnectionError: ...)"}}}]})

    ready: bool
    components: dict[str, ComponentOut]
    llm_used: dict[str, bool | None] | None = Field(
        None, description="Per hint setting (hints_on, hints_off): whether ranking runs the LLM (false: the hybrid "
        "weights are backbone only, as chosen on validation users; null: that setting is refused).")


class ErrorOut(BaseModel):
    detail: str = Field(examples=["unknown user '99999': not in the dataset and no events stored for them"])


# ---- conversions to domain objects ---------------------------------------------------------


def to_history(items: list[HistoryItemIn] | None) -> list[HistoryRef] | None:
    if items is None:
        return None
    return [HistoryRef(h.item_id, h.rating, h.title, tuple(h.genres or ())) for h in items]


def to_candidates(items: list[str | CandidateIn] | None) -> list[ItemRef] | None:
    if items is None:
        return None
    return [ItemRef(c) if isinstance(c, str) else ItemRef(c.item_id, c.title, tuple(c.genres or ())) for c in items]


def to_documents(docs: list[str | DocumentIn], catalog_has: Any) -> list[ItemRef]:
    """Rerank documents as candidates; ``catalog_has(id) -> bool`` decides what a bare string is."""
    refs = []
    for n, d in enumerate(docs):
        if isinstance(d, str):
            refs.append(ItemRef(d) if catalog_has(d) else ItemRef(f"doc-{n}", d))
        else:
            text = d.title or d.text
            refs.append(ItemRef(d.id if d.id is not None else f"doc-{n}", text))
    return refs


def to_events(events: list[EventIn], now: int) -> list[StoredEvent]:
    return [StoredEvent(e.item_id, e.rating, e.timestamp if e.timestamp is not None else now, e.title)
            for e in events]


def modes_tuple(modes: list[Mode]) -> tuple[Mode, ...]:
    """Canonical order, so ["listwise", "pointwise"] and its reverse share a cache entry."""
    return tuple(m for m in MODES if m in modes)
