"""Prompt builders for the three tasks: one code path for training data and serving.

Layout (method.md §10): fixed instructions and the user's history go in ``Prompt.shared``,
the candidate text and the question go last in ``Prompt.specific``. Every prompt of one
mode in one request therefore has the identical shared part, which the engine computes
once (KV-cache reuse, or vLLM's prefix cache).

Titles are untrusted and pass through ``ranker.text.sanitize_title`` here, so no caller
can forget it. Templates are data, checked for their placeholders at import.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ranker.text import sanitize_title
from ranker.types import Candidate, HistoryEntry, Prompt, UserProfile

LIKE_MIN = 4.0  # method.md §2: >= 4 is a like, <= 2 a dislike, 3 is neither
DISLIKE_MAX = 2.0
POINTWISE_LABELS: tuple[str, ...] = ("1", "2", "3", "4", "5")  # MovieLens is 1..5
PAIRWISE_LABELS: tuple[str, ...] = ("Yes", "No")  # Yes = the first candidate is preferred
MAX_LISTWISE = 20
LISTWISE_LABELS: tuple[str, ...] = tuple("ABCDEFGHIJKLMNOPQRST")  # one identifier per candidate
LISTWISE_TOP_N = 5
NO_HISTORY = "(none)"

SYSTEM = "You are a {item} recommender system. Read the user's history and answer with the requested label only."
POINTWISE_SHARED = (
    "Task: predict how the user would rate a candidate {item} on a scale from 1 (hated it) to 5 (loved it).\n"
    "The user's ratings, most recent first:\n"
    "{history}\n"
)
POINTWISE_SPECIFIC = (
    'Candidate {item}: "{title}"\n'
    "{hint}"
    "What rating from 1 to 5 would the user give this {item}? Answer with one digit."
)
PREFERENCE_SHARED = (  # pairwise and listwise share the likes/dislikes history block
    "Task: {task}\n"
    "{Items} the user liked, most recent first:\n"
    "{likes}\n"
    "{Items} the user disliked, most recent first:\n"
    "{dislikes}\n"
)
PAIRWISE_TASK = "decide which of two candidate {items} the user would prefer."
PAIRWISE_SPECIFIC = (
    'First candidate: "{first}"\n'
    'Second candidate: "{second}"\n'
    "{hint}"
    "Would the user prefer the first candidate over the second? Answer Yes or No."
)
LISTWISE_TASK = "rank candidate {items} by how much the user would enjoy them."
LISTWISE_SPECIFIC = (
    "Candidates:\n"
    "{candidates}\n"
    "{hint}"
    "Answer with the identifiers of the top {top_n} candidates, best first, separated by commas."
)
LISTWISE_LINE = '[{ident}] "{title}"'

TEMPLATES: dict[str, tuple[str, frozenset[str]]] = {
    "system": (SYSTEM, frozenset({"item"})),
    "pointwise_shared": (POINTWISE_SHARED, frozenset({"item", "history"})),
    "pointwise_specific": (POINTWISE_SPECIFIC, frozenset({"item", "title", "hint"})),
    "preference_shared": (PREFERENCE_SHARED, frozenset({"task", "Items", "likes", "dislikes"})),
    "pairwise_task": (PAIRWISE_TASK, frozenset({"items"})),
    "pairwise_specific": (PAIRWISE_SPECIFIC, frozenset({"first", "second", "hint"})),
    "listwise_task": (LISTWISE_TASK, frozenset({"items"})),
    "listwise_specific": (LISTWISE_SPECIFIC, frozenset({"candidates", "hint", "top_n"})),
    "listwise_line": (LISTWISE_LINE, frozenset({"ident", "title"})),
}


class TemplateError(ValueError):
    """A prompt template lacks a required placeholder or has an unknown one."""


def validate_templates(templates: dict[str, tuple[str, frozenset[str]]]) -> None:
    """Check each template's placeholders equal its required set; raise TemplateError naming it."""
    for name, (text, required) in templates.items():
        try:
            found = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as e:
            raise TemplateError(f"template {name!r} is malformed: {e}") from None
        missing, unknown = required - found, found - required
        if missing or unknown:
            raise TemplateError(f"template {name!r}: missing {sorted(missing)}, unknown {sorted(unknown)}")


validate_templates(TEMPLATES)  # a typo in a template fails at import, not at the first request


def approx_token_count(text: str) -> int:
    """Default token estimate (as Engine.count_tokens): about 4 characters per token."""
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are rendered. ``max_history_tokens`` bounds the history block."""

    max_history_tokens: int = 400  # history lines kept, most recent first, until this is spent
    max_history_items: int = 50  # the reference shows about 50 titles
    item: str = "movie"  # domain noun, singular
    items: str = "movies"  # and plural

    def __post_init__(self) -> None:
        if self.max_history_tokens < 1:
            raise ValueError(f"max_history_tokens must be >= 1, got {self.max_history_tokens}")
        if self.max_history_items < 0:
            raise ValueError(f"max_history_items must be >= 0, got {self.max_history_items}")
        for name in ("item", "items"):
            value = getattr(self, name)
            if not value or sanitize_title(value) != value:
                raise ValueError(f"{name} must be a plain non-empty word, got {value!r}")


DEFAULT_CONFIG = PromptConfig()
TokenCounter = Callable[[str], int]


def _rating_text(rating: float | None) -> str:
    if rating is None:
        return "liked"
    return str(int(rating)) if float(rating).is_integer() else f"{rating:g}"


def _budgeted(lines: list[str], config: PromptConfig, count_tokens: TokenCounter) -> int:
    """How many of ``lines`` (most recent first) fit the history budget."""
    used, kept = 0, 0
    for line in lines[: config.max_history_items]:
        used += count_tokens(line)
        if used > config.max_history_tokens:
            break
        kept += 1
    return kept


def _block(lines: list[str]) -> str:
    return "\n".join(lines) if lines else NO_HISTORY


def pointwise_history(user: UserProfile, config: PromptConfig, count_tokens: TokenCounter) -> list[str]:
    """History lines with ratings, most recent first, cut to the budget."""
    lines = [f'- "{sanitize_title(e.title)}": {_rating_text(e.rating)}' for e in reversed(user.history)]
    return lines[: _budgeted(lines, config, count_tokens)]


def _kind(entry: HistoryEntry) -> str | None:
    if entry.rating is None or entry.rating >= LIKE_MIN:
        return "like"
    return "dislike" if entry.rating <= DISLIKE_MAX else None


def preference_history(
    user: UserProfile, config: PromptConfig, count_tokens: TokenCounter
) -> tuple[list[str], list[str]]:
    """(liked lines, disliked lines), most recent first; the budget spans both; 3s are skipped."""
    tagged = [(k, f'- "{sanitize_title(e.title)}"') for e in reversed(user.history) if (k := _kind(e))]
    kept = tagged[: _budgeted([line for _, line in tagged], config, count_tokens)]
    return [line for k, line in kept if k == "like"], [line for k, line in kept if k == "dislike"]


def _hint_text(hint: str | None) -> str:
    if hint is None:
        return ""
    if "\n" in hint or not hint.strip():
        raise ValueError(f"hint must be one non-empty line, got {hint!r}")
    return hint + "\n"


def system_text(config: PromptConfig = DEFAULT_CONFIG) -> str:
    return SYSTEM.format(item=config.item)


def pointwise_shared(
    user: UserProfile, config: PromptConfig = DEFAULT_CONFIG, count_tokens: TokenCounter = approx_token_count
) -> str:
    history = _block(pointwise_history(user, config, count_tokens))
    return POINTWISE_SHARED.format(item=config.item, history=history)


def _preference_shared(task: str, user: UserProfile, config: PromptConfig, count_tokens: TokenCounter) -> str:
    likes, dislikes = preference_history(user, config, count_tokens)
    return PREFERENCE_SHARED.format(
        task=task.format(items=config.items),
        Items=config.items.capitalize(),
        likes=_block(likes),
        dislikes=_block(dislikes),
    )


def pairwise_shared(
    user: UserProfile, config: PromptConfig = DEFAULT_CONFIG, count_tokens: TokenCounter = approx_token_count
) -> str:
    return _preference_shared(PAIRWISE_TASK, user, config, count_tokens)


def listwise_shared(
    user: UserProfile, config: PromptConfig = DEFAULT_CONFIG, count_tokens: TokenCounter = approx_token_count
) -> str:
    return _preference_shared(LISTWISE_TASK, user, config, count_tokens)


def pointwise_prompt(
    user: UserProfile,
    candidate: Candidate,
    hint: str | None = None,
    *,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> Prompt:
    """Rate one candidate 1..5. ``shared``: a precomputed ``pointwise_shared(user, ...)``."""
    specific = POINTWISE_SPECIFIC.format(item=config.item, title=sanitize_title(candidate.title), hint=_hint_text(hint))
    shared = pointwise_shared(user, config, count_tokens) if shared is None else shared
    return Prompt(system_text(config), shared, specific, POINTWISE_LABELS)


def pairwise_prompt(
    user: UserProfile,
    first: Candidate,
    second: Candidate,
    hint: str | None = None,
    *,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> Prompt:
    """Would the user prefer ``first`` over ``second``? "Yes" means first."""
    specific = PAIRWISE_SPECIFIC.format(
        first=sanitize_title(first.title), second=sanitize_title(second.title), hint=_hint_text(hint)
    )
    shared = pairwise_shared(user, config, count_tokens) if shared is None else shared
    return Prompt(system_text(config), shared, specific, PAIRWISE_LABELS)


def listwise_identifiers(n: int) -> tuple[str, ...]:
    if not 1 <= n <= MAX_LISTWISE:
        raise ValueError(f"a listwise prompt takes 1..{MAX_LISTWISE} candidates, got {n} (split into windows)")
    return LISTWISE_LABELS[:n]


def listwise_prompt(
    user: UserProfile,
    candidates: Sequence[Candidate],
    hint: str | None = None,
    *,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> Prompt:
    """Rank candidates shown in the given order, labelled A, B, C, ... (at most 20)."""
    idents = listwise_identifiers(len(candidates))
    lines = "\n".join(LISTWISE_LINE.format(ident=i, title=sanitize_title(c.title)) for i, c in zip(idents, candidates))
    specific = LISTWISE_SPECIFIC.format(
        candidates=lines, hint=_hint_text(hint), top_n=min(LISTWISE_TOP_N, len(candidates))
    )
    shared = listwise_shared(user, config, count_tokens) if shared is None else shared
    return Prompt(system_text(config), shared, specific, idents)


# Answers (training targets). The first answer token is what serving reads.


def pointwise_answer(rating: float) -> str:
    if isinstance(rating, bool) or not float(rating).is_integer() or not 1 <= rating <= 5:
        raise ValueError(f"pointwise rating must be a whole number 1..5, got {rating!r}")
    return str(int(rating))


def pairwise_answer(first_preferred: bool) -> str:
    return PAIRWISE_LABELS[0] if first_preferred else PAIRWISE_LABELS[1]


def listwise_answer(ordered_identifiers: Sequence[str]) -> str:
    bad = [i for i in ordered_identifiers if i not in LISTWISE_LABELS]
    if bad or not ordered_identifiers:
        raise ValueError(f"listwise answer needs identifiers from A..T, got {list(ordered_identifiers)!r}")
    if len(set(ordered_identifiers)) != len(ordered_identifiers):
        raise ValueError(f"listwise answer repeats an identifier: {list(ordered_identifiers)!r}")
    return ", ".join(ordered_identifiers)
