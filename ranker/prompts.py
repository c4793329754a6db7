"""Prompt builders for the three tasks: one code path for training data and serving.

Layout (docs/ranker.md, "Prompt layout"): ONE shared part per request — the fixed
instructions and the user's rated history — followed by a short candidate-specific part
per prompt. The shared part is identical for every prompt of every mode of one request,
so the engine runs it once per request (one prefill, or one vLLM prefix-cache entry) and
every pointwise, pairwise and listwise question costs only its own few tokens. Forward
tokens per request are the budget that matters on a CPU; this layout spends them on the
history once and on candidate titles.

Two layouts (``PromptConfig.layout``), each served only to an adapter tuned on it:
- ``inline``: every question names its candidates by title (and genres), with its own hint;
- ``catalogue``: the shared part also lists the request's candidates once, labelled A, B,
  C, ... in an order seeded by the candidate set (never the backbone's), followed by one
  hint line with the backbone's order; the questions then name candidates by letter only
  ("Rate C 1-5."), so each costs a few tokens instead of a title or two. The listwise
  questions restate the letters in their shifted orders. Candidates that only this
  request has make its shared part per request, so a history K/V cached across requests
  is reused only for the same candidate set.

Titles (and genres) are untrusted and pass through ``ranker.text.sanitize_title`` here, so
no caller can forget it. Genres follow an item's title, in parentheses, only when
``PromptConfig.genres`` is on: an adapter is served with the layout it was tuned on.
Templates are data, checked for their placeholders at import.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ranker.hints import listwise_hint
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
# the catalogue layout (PromptConfig.layout == "catalogue")
CATALOGUE = "Candidate {items}:\n{candidates}{hint}\n"
CATALOGUE_POINTWISE = "Rate {ident} 1-5."
CATALOGUE_PAIRWISE = "Prefer {first} over {second}? Yes or No."
CATALOGUE_LISTWISE = "Rank {order} by letter, best first:"
INLINE, CATALOGUE_LAYOUT = "inline", "catalogue"
LAYOUTS = (INLINE, CATALOGUE_LAYOUT)

TEMPLATES: dict[str, tuple[str, frozenset[str]]] = {
    "system": (SYSTEM, frozenset({"item"})),
    "shared": (SHARED, frozenset({"Items", "history"})),
    "history_line": (HISTORY_LINE, frozenset({"title", "genres", "rating"})),
    "pointwise_specific": (POINTWISE_SPECIFIC, frozenset({"title", "genres", "hint"})),
    "pairwise_specific": (PAIRWISE_SPECIFIC, frozenset({"first", "first_genres", "second", "second_genres", "hint"})),
    "listwise_specific": (LISTWISE_SPECIFIC, frozenset({"items", "candidates", "hint"})),
    "listwise_line": (LISTWISE_LINE, frozenset({"ident", "title", "genres"})),
    "genres": (GENRES, frozenset({"names"})),
    "catalogue": (CATALOGUE, frozenset({"items", "candidates", "hint"})),
    "catalogue_pointwise": (CATALOGUE_POINTWISE, frozenset({"ident"})),
    "catalogue_pairwise": (CATALOGUE_PAIRWISE, frozenset({"first", "second"})),
    "catalogue_listwise": (CATALOGUE_LISTWISE, frozenset({"order"})),
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
    layout: str = INLINE  # INLINE or CATALOGUE_LAYOUT (the adapter's train_config records it)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"prompt layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.max_history_tokens < 1:
            raise ValueError(f"max_history_tokens must be >= 1, got {self.max_history_tokens}")
        if self.max_history_items < 0:
            raise ValueError(f"max_history_items must be >= 0, got {self.max_history_items}")
        for name in ("item", "items"):
            value = getattr(self, name)
            if not value or sanitize_title(value) != value:
                raise ValueError(f"{name} must be a plain non-empty word, got {value!r}")

    @property
    def catalogue(self) -> bool:
        return self.layout == CATALOGUE_LAYOUT

    def question_hints(self, hints: bool) -> bool:
        """Whether each question carries its own hint: only in the inline layout (the
        catalogue's one hint line sits in the shared part)."""
        return hints and not self.catalogue


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
    user: UserProfile,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    candidates: Sequence[Candidate] | None = None,
    hints: bool = False,
) -> str:
    """The part every prompt of a request shares: the user's rated history, and in the
    catalogue layout the request's ``candidates`` (with the backbone's order when ``hints``)."""
    lines = history_lines(user, config, count_tokens)
    history = SHARED.format(Items=config.items.capitalize(), history="\n".join(lines) if lines else NO_HISTORY)
    if not config.catalogue:
        return history
    if not candidates:
        raise ValueError("the catalogue layout lists the request's candidates in the shared part: pass them")
    shown = [candidates[i] for i in catalogue_order(candidates)]
    idents = listwise_identifiers(len(shown))
    block = "\n".join(LISTWISE_LINE.format(ident=i, title=sanitize_title(c.title), genres=genre_text(c.genres, config))
                      for i, c in zip(idents, shown))
    hint = listwise_hint(shown, idents, top_n=len(shown)) if hints else None
    return history + CATALOGUE.format(items=config.items, candidates=block, hint=_hint_text(hint))


def catalogue_order(candidates: Sequence[Candidate]) -> list[int]:
    """Indices of ``candidates`` in catalogue order: a permutation seeded by the candidate
    *set*, so neither the input order nor the backbone's order shows through."""
    canonical = sorted(range(len(candidates)), key=lambda i: candidates[i].item_id)
    digest = hashlib.sha256("\x1f".join(candidates[i].item_id for i in canonical).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return [canonical[i] for i in rng.permutation(len(canonical))]


def catalogue_identifiers(candidates: Sequence[Candidate]) -> dict[str, str]:
    """item_id -> its letter in the catalogue (``shared_text``'s order)."""
    order = catalogue_order(candidates)
    return {candidates[i].item_id: ident for i, ident in zip(order, listwise_identifiers(len(order)))}


def candidate_limit(layout: str) -> int | None:
    """Most candidates one request may have in ``layout`` (None: no limit of its own)."""
    return MAX_LISTWISE if layout == CATALOGUE_LAYOUT else None


def identifiers_for(candidates: Sequence[Candidate], config: PromptConfig) -> dict[str, str] | None:
    """The catalogue letters when ``config`` uses the catalogue layout, else None (titles)."""
    return catalogue_identifiers(candidates) if config.catalogue else None


def _hint_text(hint: str | None) -> str:
    if hint is None:
        return ""
    if "\n" in hint or not hint.strip():
        raise ValueError(f"hint must be one non-empty line, got {hint!r}")
    return "\n" + hint


def user_part_length(shared: str, config: PromptConfig) -> int:
    """Characters of ``shared`` that depend on the user alone: in the catalogue layout, the
    history before the candidate list (an engine may keep its K/V for the user's next
    request); 0 in the inline layout, where the user part is all of ``shared``."""
    if not config.catalogue:
        return 0
    # History lines start with a quoted title (sanitised titles hold no line break), so
    # the header line can only be the catalogue's own.
    header = "\n" + CATALOGUE.partition("{candidates}")[0].format(items=config.items)
    at = shared.find(header)
    if at < 0:
        raise ValueError("catalogue layout: the shared text has no candidate list")
    return at + 1


def _prompt(user, config, count_tokens, shared, specific: str, labels: tuple[str, ...]) -> Prompt:
    shared = shared_text(user, config, count_tokens) if shared is None else shared
    return Prompt(system_text(config), shared, specific, labels, stem=user_part_length(shared, config))


def _catalogue_args(config: PromptConfig, idents: Mapping[str, str] | None, hint: str | None,
                    shared: str | None) -> Mapping[str, str] | None:
    """The letters to name candidates by (catalogue layout), checked; None in the inline layout."""
    if not config.catalogue:
        return None
    if idents is None or shared is None:
        raise ValueError("the catalogue layout names candidates by letter: pass idents and the shared text")
    if hint is not None:
        raise ValueError("the catalogue layout carries its hint in the shared part, not in a question")
    return idents


def pointwise_prompt(
    user: UserProfile,
    candidate: Candidate,
    hint: str | None = None,
    *,
    config: PromptConfig = DEFAULT_CONFIG,
    count_tokens: TokenCounter = approx_token_count,
    shared: str | None = None,
    idents: Mapping[str, str] | None = None,
) -> Prompt:
    """Rate one candidate 1..5. ``shared``: a precomputed ``shared_text(user, ...)``;
    ``idents``: catalogue letters by item_id (catalogue layout only, ``identifiers_for``)."""
    if (letters := _catalogue_args(config, idents, hint, shared)) is not None:
        specific = CATALOGUE_POINTWISE.format(ident=letters[candidate.item_id])
    else:
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
    idents: Mapping[str, str] | None = None,
) -> Prompt:
    """Would the user prefer ``first`` over ``second``? "Yes" means first."""
    if (letters := _catalogue_args(config, idents, hint, shared)) is not None:
        specific = CATALOGUE_PAIRWISE.format(first=letters[first.item_id], second=letters[second.item_id])
    else:
        specific = PAIRWISE_SPECIFIC.format(
            first=sanitize_title(first.title), first_genres=genre_text(first.genres, config),
            second=sanitize_title(second.title), second_genres=genre_text(second.genres, config),
            hint=_hint_text(hint),
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
    idents: Mapping[str, str] | None = None,
) -> Prompt:
    """Rank candidates shown in the given order, labelled A, B, C, ... (at most 20).

    In the catalogue layout the letters are the catalogue's (labels A.. in catalogue
    order) and the question restates them in the given order."""
    labels = listwise_identifiers(len(candidates))
    if (letters := _catalogue_args(config, idents, hint, shared)) is not None:
        if len(letters) != len(candidates):
            raise ValueError(f"a catalogue listwise question shows all {len(letters)} candidates, "
                             f"got {len(candidates)}")
        specific = CATALOGUE_LISTWISE.format(order=", ".join(letters[c.item_id] for c in candidates))
        return _prompt(user, config, count_tokens, shared, specific, labels)
    lines = "\n".join(LISTWISE_LINE.format(ident=i, title=sanitize_title(c.title), genres=genre_text(c.genres, config))
                      for i, c in zip(labels, candidates))
    specific = LISTWISE_SPECIFIC.format(items=config.items, candidates=lines, hint=_hint_text(hint))
    return _prompt(user, config, count_tokens, shared, specific, labels)


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
