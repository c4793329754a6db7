"""The engine interface: who answers. Narrow on purpose, so that a transformers engine
(in-process) and a vLLM engine (OpenAI-compatible completions with max_tokens=1 and
logprob_token_ids) implement the same thing."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


# keep(i) -> False once nobody waits for prompt i any more (its caller timed out or went away)
Keep = Callable[[int], bool]


class EngineError(RuntimeError):
    """The engine could not score (model failure, timeout, unreachable server)."""


class LabelError(ValueError):
    """A label is not exactly one token for the loaded tokenizer."""


@dataclass(frozen=True)
class ScoringPrompt:
    prefix: str  # chat-formatted shared text; prompts with equal prefixes share its KV cache
    suffix: str  # chat-formatted specific text, ending where the answer's first token goes
    # prefix[:stem] depends on the user alone (system + history) and comes back in their
    # next request with other candidates: an engine may keep its K/V apart; 0 = no such part
    stem: int = 0


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
        """Next-token log-probabilities of ``labels`` after each prompt (one forward each).

        Engines that can stop early also take ``keep: Keep | None = None``: between their
        forward passes (or server requests) they skip the prompts whose ``keep(i)`` is False,
        whose rows then come back NaN and whose tokens are not counted. An engine without
        it computes everything (``accepts_keep`` tells which)."""

    @abstractmethod
    def chat_template(self, system: str, user: str) -> str:
        """The model's chat rendering of one system + one user message, ready for the answer."""

    def count_tokens(self, text: str) -> int:
        """Token count used for history budgets (engines override with their tokenizer)."""
        return max(1, len(text) // 4)


def accepts_keep(engine: Engine) -> bool:
    """Whether ``engine.score`` takes the optional ``keep`` argument (see Engine.score)."""
    try:
        return "keep" in inspect.signature(engine.score).parameters
    except (TypeError, ValueError):
        return False
