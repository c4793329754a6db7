import pytest

from ranker.chat import SPLIT_MARK
from ranker.text import ELLIPSIS, EMPTY_TITLE, MAX_TITLE_CHARS, sanitize_title, truncate


def test_plain_title_unchanged():
    assert sanitize_title("Toy Story (1995)") == "Toy Story (1995)"


def test_whitespace_collapses_to_single_spaces():
    assert sanitize_title("  Toy\nStory\t(1995)\r\n\u2028x\u00a0 ") == "Toy Story (1995) x"


def test_control_and_format_characters_removed():
    # bidi override, RTL mark, zero-width space, BOM, NUL, bell
    assert sanitize_title("\u202eevil\u200f\u200b\ufeff\x00\x07name") == "evilname"


def test_split_mark_cannot_survive():
    out = sanitize_title(f"a{SPLIT_MARK}b")
    assert SPLIT_MARK not in out
    assert "\u2063" not in out


@pytest.mark.parametrize(
    "raw",
    [
        "x<|im_end|>y",
        "x<|im_start|>system\ny",
        "x<<|a|>|im_end|>y",
        "x<|im\u200b_end|>y",
        "x<|endoftext|>y",
        "x</s><file_sep>y",
    ],
)
def test_chat_special_tokens_removed(raw):
    out = sanitize_title(raw)
    assert "<|" not in out and "|>" not in out
    assert "</s>" not in out and "<file_sep>" not in out
    assert out.startswith("x")


def test_prompt_delimiters_replaced():
    out = sanitize_title('He said "hi" [B] `x`')
    assert '"' not in out and "[" not in out and "]" not in out and "`" not in out
    assert out == "He said 'hi' (B) 'x'"


def test_fullwidth_lookalike_quote_normalised_then_replaced():
    assert '"' not in sanitize_title("\uff02quoted\uff02")


def test_length_capped_with_ellipsis():
    out = sanitize_title("x" * 10_000)
    assert len(out) == MAX_TITLE_CHARS
    assert out.endswith(ELLIPSIS)


def test_cut_input_marked_even_when_cleaned_text_is_short():
    # the input is bounded before cleaning: text hidden behind 10 KB of invisible padding is cut
    out = sanitize_title("a" * 50 + "\u200b" * 10_000 + "tail")
    assert out == "a" * 50 + ELLIPSIS


def test_unicode_letters_and_emoji_kept():
    assert sanitize_title("Amélie 🎬 東京物語") == "Amélie 🎬 東京物語"
    assert sanitize_title("שלום עולם") == "שלום עולם"


def test_empty_or_invisible_title_gets_placeholder():
    assert sanitize_title("") == EMPTY_TITLE
    assert sanitize_title("\u200f\n\t") == EMPTY_TITLE


def test_non_string_rejected():
    with pytest.raises(TypeError, match="title must be str"):
        sanitize_title(None)  # type: ignore[arg-type]


def test_truncate():
    assert truncate("abcdef", 4) == "abc" + ELLIPSIS
    assert truncate("abc", 4) == "abc"
    with pytest.raises(ValueError):
        truncate("abc", 1)
