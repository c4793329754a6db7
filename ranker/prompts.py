"""Prompt builders for the three tasks: one code path for training data and serving.

Layout (docs/ranker.md, "Prompt layout"): ONE shared part per request — the fixed
instructions and the user's rated history — followed by a short candidate-specific part
per prompt. The shared part is identical for every prompt of every mode of one request,
so the engine runs it once per request (one prefill, or one vLLM prefix-cache entry) and
every pointwise, pairwise and listwise question costs only its own few tokens. Forward
tokens per request are the budget that matters on a CPU; this layout spends them on the
history once and on candidate titles.

Titles (and genres) are untrusted and pass through ``ranker.text.sanitize_title`` here, so
no caller can forget it. Genres follow an item's title, in parentheses, only when
``PromptConfig.genres`` is on: an adapter is served with the layout it was tuned on.
Templates are data, checked for their placeholders at import.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ranker.text import sanitize_title
from ranker.types import Candidate, Prompt, UserProfile

POINTWISE_LABELS: tuple[str, ...] = ("1", "2", "3", "4", "5")  # MovieLens is 1..5
PAIRWISE_LABELS: tuple[str, ...] = ("Yes", "No")  # Yes = the first candidate is preferred
MAX_LISTWISE = 20
LISTWISE_LABELS: tuple[str, ...] = tuple("ABCDEFGHIJKLMNOPQRST")  # one identifier per candidate
LISTWISE_TOP_N = 5
NO_HISTORY = "(none yet)"

SYSTEM = "You are a {item} recommender. Answer with one label."
SHARED = "{Items} the user rated, newest first (1 = hated, 5 = loved):\n{history}\n"
HISTORY_LINE = '"{title}"{genres}: {rating}'
POINTWISE_SPECIFIC = 'Rate "{title}"{genres} 1-5.{hint}'
PAIRWISE_SPECIFIC = 'Prefer "{first}"{first_genres} over "{second}"{second_genres}? Yes or No.{hint}'
LISTWISE_SPECIFIC = "Rank these {items} by letter, best first:\n{candidates}{hint}"
LISTWISE_LINE = "{ident}. {title}{genres}"  # one line per candidate: sanitised titles hold no line break
GENRES = " ({names})"  # after a title, when PromptConfig.genres is on
MAX_GENRES = 3  # a few words per item: the history budget buys titles, not genre lists
MAX_GENRE_CHARS = 30

TEMPLATES: dict[str, tuple[str, frozenset[str]]] = {
    "system": (SYSTEM, frozenset({"item"})),
    "shared": (SHARED, frozenset({"Items", "history"})),
    "history_line": (HISTORY_LINE, frozenset({"title", "genres", "rating"})),
    "pointwise_specific": (POINTWISE_SPECIFIC, frozenset({"title", "genres", "hint"})),
    "pairwise_specific": (PAIRWISE_SPECIFIC, frozenset({"first", "first_genres", "second", "second_genres", "hint"})),
    "listwise_specific": (LISTWISE_SPECIFIC, frozenset({"items", "candidates", "hint"})),
    "listwise_line": (LISTWISE_LINE, frozenset({"ident", "title", "genres"})),
    "genres": (GENRES, frozenset({"names"})),
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

    max_history_tokens: int = 200  # history lines kept, most recent first, until this is spent
    max_history_items: int = 50
    item: str = "movie"  # domain noun, singular
    items: str = "movies"  # and plural
    genres: bool = False  # genres after each title (the adapter's train_config records it)

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
        return "liked"  # an event that only says "liked" (a click, a like button)
    return str(int(rating)) if float(rating).is_integer() else f"{rating:g}"


def genre_text(genres: Sequence[str], config: PromptConfig) -> str:
    """' (Action, Sci-Fi)' after a title when the config shows genres and the item has some, else ''."""
    if not config.genres:
        return ""
    names = list(dict.fromkeys(sanitize_title(g, MAX_GENRE_CHARS) for g in genres))[:MAX_GENRES]
    return GENRES.format(names=", ".join(names)) if names else ""


def history_lines(user: UserProfile, config: PromptConfig, count_tokens: TokenCounter) -> list[str]:
    """One line per rated item, most recent first, as many as fit the token budget."""
    lines: list[str] = []
    used = 0
    for entry in list(reversed(user.history))[: config.max_history_items]:
        line = HISTORY_LINE.format(title=sanitize_title(entry.title), genres=genre_text(entry.genres, config),
                                   rating=_rating_text(entry.rating))
        used += count_tokens(line + "\n")
        if used > config.max_history_tokens:
            break
        lines.append(line)
    return lines


def system_text(config: PromptConfig = DEFAULT_CONFIG) -> str:
    return SYSTEM.format(item=config.item)


def shared_text(
    user: UserProfile, config: PromptConfig = DEFAULT_CONFIG, count_tokens: TokenCounter = approx_token_count
) -> str:
    """The part every prompt of a request shares: the user's rated history."""
    lines = history_lines(user, config, count_tokens)
    return SHARED.format(Items=config.items.capitalize(), history="\n".join(lines) if lines else NO_HISTORY)


def _hint_text(hint: str | None) -> str:
    if hint is None:
        return ""
    if "\n" in hint or not hint.strip():
        raise ValueError(f"hint must be one non-empty line, got {hint!r}")
    return "\n" + hint


def _prompt(user, config, count_tokens, shared, specific: str, labels: tuple[str, ...]) -> Prompt:
    shared = shared_text(user, config, count_tokens) if shared is None else shared
    return Prompt(system_text(config), shared, specific, labels)


def pointwise_prompt(
    user: UserProfile,
    candidate: Candidate,
    hint: str | None = None,
    *,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
) -> Prompt:
    """Rate one candidate 1..5. ``shared``: a precomputed ``shared_text(user, ...)``."""
    specific = POINTWISE_SPECIFIC.format(title=sanitize_title(candidate.title),
                                         genres=genre_text(candidate.genres, config), hint=_hint_text(hint))
    return _prompt(user, config, count_tokens, shared, specific, POINTWISE_LABELS)


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
        first=sanitize_title(first.title), first_genres=genre_text(first.genres, config),
        second=sanitize_title(second.title), second_genres=genre_text(second.genres, config), hint=_hint_text(hint),
    )
    return _prompt(user, config, count_tokens, shared, specific, PAIRWISE_LABELS)


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
    lines = "\n".join(LISTWISE_LINE.format(ident=i, title=sanitize_title(c.title), genres=genre_text(c.genres, config))
                      for i, c in zip(idents, candidates))
    specific = LISTWISE_SPECIFIC.format(items=config.items, candidates=lines, hint=_hint_text(hint))
    return _prompt(user, config, count_tokens, shared, specific, idents)


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
