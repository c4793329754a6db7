"""The engine interface: who answers. Narrow on purpose, so that a transformers engine
(in-process) and a vLLM engine (OpenAI-compatible completions with max_tokens=1 and
logprob_token_ids) implement the same thing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class EngineError(RuntimeError):
    """The engine could not score (model failure, timeout, unreachable server)."""


class LabelError(ValueError):
    """A label is not exactly one token for the loaded tokenizer."""


@dataclass(frozen=True)
class ScoringPrompt:
    prefix: str  # chat-formatted shared text; prompts with equal prefixes share its KV cache
    suffix: str  # chat-formatted specific text, ending where the answer's first token goes


@dataclass
class ScoreBatch:
    logprobs: np.ndarray  # (n_prompts, n_labels): log P(label's token | prompt) over the full vocab
    forward_tokens: int  # tokens actually run through the model (prefix once per group + suffixes)
    calls: int  # forward passes (or server requests) made


class Engine(ABC):
    model_name: str
    adapter_name: str | None = None

    @abstractmethod
    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        """Token id of each label; raises LabelError naming any label that is not one token."""

    @abstractmethod
    def score(self, prompts: Sequence[ScoringPrompt], labels: Sequence[str]) -> ScoreBatch:
        """Next-token log-probabilities of ``labels`` after each prompt (one forward each)."""

    @abstractmethod
    def chat_template(self, system: str, user: str) -> str:
        """The model's chat rendering of one system + one user message, ready for the answer."""

    def count_tokens(self, text: str) -> int:
        """Token count used for history budgets (engines override with their tokenizer)."""
        return max(1, len(text) // 4)
