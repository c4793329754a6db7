"""Chat formatting: turn a Prompt into the engine's (prefix, suffix) text.

The model's own chat template renders system + user messages; we split the rendering at
a marker placed between the shared and the specific part of the user message, so the
prefix is identical for every prompt of a request (one KV cache, or one vLLM prefix-cache
entry, serves them all). Training renders through the same function: no template drift.
"""

from __future__ import annotations

from ranker.engines.base import Engine, ScoringPrompt
from ranker.types import Prompt

SPLIT_MARK = "\u2063RECRANKER_SPLIT\u2063"  # sanitised titles can never contain it
STEM_MARK = "\u2063RECRANKER_STEM\u2063"  # where the user part of the shared text ends


def to_scoring_prompt(engine: Engine, prompt: Prompt) -> ScoringPrompt:
    shared = prompt.shared
    if prompt.stem:
        shared = shared[:prompt.stem] + STEM_MARK + shared[prompt.stem:]
    text = engine.chat_template(prompt.system, shared + SPLIT_MARK + prompt.specific)
    prefix, sep, suffix = text.partition(SPLIT_MARK)
    if not sep or SPLIT_MARK in suffix:
        raise ValueError("chat template did not keep the split marker exactly once")
    stem, mark, rest = prefix.partition(STEM_MARK)
    if prompt.stem and (not mark or STEM_MARK in rest):
        raise ValueError("chat template did not keep the stem marker exactly once")
    return ScoringPrompt(prefix=stem + rest, suffix=suffix, stem=len(stem) if mark else 0)
