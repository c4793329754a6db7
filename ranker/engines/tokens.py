"""Tokenizer-side helpers shared by every engine: chat rendering, label ids, encoding.

Kept apart from the engines so the in-process and the remote engine render and tokenize
identically (and the remote one needs no model weights, only the tokenizer files).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ranker.engines.base import LabelError, ScoringPrompt


def render_chat(tokenizer, system: str, user: str) -> str:
    """System + user message in the model's chat template, ending with the generation prompt."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # noqa: BLE001 - some templates reject a system role (jinja TemplateError)
        merged = [{"role": "user", "content": f"{system}\n\n{user}" if system else user}]
        return tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)


def encode_text(tokenizer, text: str) -> list[int]:
    """Ids of already chat-formatted text: the template carries its own special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def label_ids(tokenizer, labels: Sequence[str], model_name: str) -> list[int]:
    """Id of each label as the FIRST answer token, i.e. encoded right after the generation
    prompt (BPE merges and sentencepiece's leading-space marker depend on what precedes
    it). Raises LabelError naming a label that is empty or not exactly one token there."""
    ctx = render_chat(tokenizer, "s", "u")
    base = encode_text(tokenizer, ctx)
    out = []
    for label in labels:
        full = encode_text(tokenizer, ctx + label)
        extra = full[len(base):]
        if not label or full[: len(base)] != base or len(extra) != 1:
            shown = tokenizer.convert_ids_to_tokens(extra) if full[: len(base)] == base else "a merge with the prompt"
            raise LabelError(f"label {label!r} is not exactly one token for {model_name} as the first "
                             f"answer token (encodes as {shown})")
        out.append(extra[0])
    return out


class LocalTokenizerMixin:
    """The text side of an engine that tokenizes locally (in-process HF, remote vLLM): both
    must render, count and encode exactly as training did. Call ``_init_text`` once."""

    tokenizer: object
    model_name: str

    def _init_text(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        # a Rust tokenizer shared by service threads can fail with "Already borrowed"; its own
        # lock, so prompt building (count_tokens) need not wait for a forward pass
        self._tok_lock = threading.Lock()
        self._label_cache: dict[tuple[str, ...], list[int]] = {}

    def chat_template(self, system: str, user: str) -> str:
        return render_chat(self.tokenizer, system, user)

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text))

    def encode(self, prompt: ScoringPrompt) -> tuple[list[int], list[int]]:
        """Token ids of (prefix, suffix), tokenized separately: training uses this too, so
        the model learns on exactly the ids it is scored on."""
        return self._ids(prompt.prefix), self._ids(prompt.suffix)

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        key = tuple(labels)
        if key not in self._label_cache:
            with self._tok_lock:
                self._label_cache[key] = label_ids(self.tokenizer, key, self.model_name)
        return list(self._label_cache[key])

    def _ids(self, text: str) -> list[int]:
        with self._tok_lock:
            return encode_text(self.tokenizer, text)
