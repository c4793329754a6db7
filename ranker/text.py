"""Untrusted item text (titles) made safe to place inside a prompt.

A title ends up on one line between double quotes. Anything that could break that
layout is removed: line breaks, control and format characters (bidi overrides, the
invisible separator that ``ranker.chat.SPLIT_MARK`` is built from), the prompt's own
delimiters (double quotes, square brackets used for listwise identifiers) and chat
special tokens such as ``<|im_end|>``. Letters of any script and emoji are kept.
"""

from __future__ import annotations

import re
import unicodedata

MAX_TITLE_CHARS = 120
ELLIPSIS = "\u2026"
EMPTY_TITLE = "(untitled)"

# Unicode categories dropped outright: control, format (incl. U+200B-U+200F, U+202A-U+202E,
# U+2060-U+2064, U+FEFF), surrogates, private use, unassigned.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Special-token shapes: "<|im_end|>", "<|endoftext|>", and tag-like "<file_sep>", "</s>".
_SPECIAL_TOKEN = re.compile(r"<\|[^\s]*?\|>|<\|?/?[A-Za-z_][\w.-]{0,40}\|?>")
_TOKEN_FRAGMENT = re.compile(r"<\||\|>")
# The templates' delimiters, mapped to harmless look-alikes rather than deleted so
# titles such as '[REC] (2007)' stay readable.
_DELIMITERS = str.maketrans({'"': "'", "[": "(", "]": ")", "`": "'"})
_SPACES = re.compile(r"\s+")


def _is_space(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def _drop_invisible(text: str) -> str:
    return "".join(
        " " if _is_space(ch) else ch for ch in text if _is_space(ch) or unicodedata.category(ch) not in _DROP_CATEGORIES
    )


def _drop_special_tokens(text: str) -> str:
    # Removing one token can join the pieces of another ("<<|x|>|im_end|>"): repeat to a fixed point.
    while True:
        cleaned = _TOKEN_FRAGMENT.sub("", _SPECIAL_TOKEN.sub("", text))
        if cleaned == text:
            return cleaned
        text = cleaned


def truncate(text: str, max_chars: int = MAX_TITLE_CHARS) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, marking the cut with an ellipsis."""
    if max_chars < 2:
        raise ValueError(f"max_chars must be >= 2, got {max_chars}")
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 1].rstrip() + ELLIPSIS


def sanitize_title(raw: str, max_chars: int = MAX_TITLE_CHARS) -> str:
    """One safe line of text for an untrusted title; never empty, at most ``max_chars`` chars."""
    if not isinstance(raw, str):
        raise TypeError(f"title must be str, got {type(raw).__name__}")
    # NFKC first, so full-width look-alikes of delimiters (U+FF02 etc.) become the real ones
    # and are caught below. Work on a bounded slice: a 10 KB title costs no more than a short one.
    limit = max_chars * 8
    text = unicodedata.normalize("NFKC", raw[:limit])
    text = _drop_invisible(text)
    text = _drop_special_tokens(text)
    text = text.translate(_DELIMITERS)
    text = _SPACES.sub(" ", text).strip()
    if not text:
        return EMPTY_TITLE
    if len(raw) > limit:  # the input was cut before cleaning: say so even if the rest fits
        return text[: max_chars - 1].rstrip() + ELLIPSIS
    return truncate(text, max_chars)
