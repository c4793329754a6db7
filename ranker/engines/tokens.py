"""Tokenizer-side helpers shared by every engine: chat rendering, label ids, encoding.

Kept apart from the engines so the in-process and the remote engine render and tokenize
identically (and the remote one needs no model weights, only the tokenizer files).
"""

from __future__ import annotations

from collections.abc import Sequence

from ranker.engines.base import LabelError


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
