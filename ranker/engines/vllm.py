"""Remote engine: a vLLM server's OpenAI-compatible ``/v1/completions``, one token per prompt.

Request (per batch of prompts, one HTTP call):
  prompt = [[token ids of prefix + suffix], ...]  (our own tokenization, so the server
           scores exactly the ids HFEngine and training use; vLLM accepts id lists)
  max_tokens=1, temperature=0, logprobs=20, logprob_token_ids=<label ids>,
  return_tokens_as_token_ids=true.
Response shape (vLLM's CompletionLogProbs, read from vllm/entrypoints/openai/completion/
serving.py): ``choices[i].logprobs.top_logprobs[0]`` is a dict ``{token: logprob}`` holding
the sampled token plus every id of ``logprob_token_ids``; with return_tokens_as_token_ids
the keys are ``"token_id:<id>"``, otherwise decoded token text. Servers too old for
``logprob_token_ids`` ignore it and return the top-20 only: a label missing there gets
MISSING_LOGPROB. Values are full-vocabulary log-probabilities; renormalising over the
labels is the caller's job. ``prompt_logprobs`` is never sent: it disables prefix-cache
reads. vLLM's automatic prefix cache shares the prefix across prompts and requests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from ranker.adapter import Adapter
from ranker.engines import tokens
from ranker.engines.base import Engine, EngineError, Keep, ScoreBatch, ScoringPrompt

log = logging.getLogger(__name__)

MISSING_LOGPROB = -30.0  # a label outside an old server's top-k: effectively probability 0
TOP_K = 20  # vLLM's default --max-logprobs; larger values are rejected with HTTP 400
MAX_LABEL_IDS = 128  # vLLM's limit on logprob_token_ids


class VLLMEngine(tokens.LocalTokenizerMixin, Engine):
    """Scores through a running ``vllm serve`` (base model or a ``--lora-modules`` name).

    base_url: server root, e.g. http://127.0.0.1:8000 (``/v1/completions`` is appended).
    model: the served base model's name.
    tokenizer_path: local folder (or hub id) of the same model's tokenizer.
    adapter: the LoRA adapter to score with. vLLM serves a LoRA under a module name
      (``vllm serve BASE --enable-lora --lora-modules NAME=PATH``), and a request selects it
      by sending that name as its "model"; we send ``adapter.name`` and report the adapter's
      name and revision like the HF engine does. None scores with the base model.
    """

    def __init__(self, base_url: str, model: str, tokenizer_path: str | Path, timeout: float = 30.0,
                 api_key: str | None = None, max_prompts_per_request: int = 64,
                 adapter: Adapter | None = None) -> None:
        from transformers import AutoTokenizer

        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.model_name = model
        self.adapter = adapter
        self.adapter_name = adapter.name if adapter is not None else None
        self.adapter_revision = adapter.revision if adapter is not None else None
        self.served_model = self.adapter_name or model  # the "model" every request names
        self.url = base_url.rstrip("/") + "/v1/completions"
        self.max_prompts_per_request = max_prompts_per_request
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
        except Exception as e:  # noqa: BLE001 - OSError/ValueError for a missing or bad folder
            raise EngineError(f"cannot load tokenizer {tokenizer_path} for vLLM model {model}: {e}") from e
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)  # thread-safe, pooled
        self._init_text(tokenizer)

    def score(self, prompts: Sequence[ScoringPrompt], labels: Sequence[str], keep: Keep | None = None) -> ScoreBatch:
        """``keep``: a request not sent yet whose prompts are all unwanted is not sent (NaN rows);
        one already sent is not cancelled on the server."""
        wanted = self.label_token_ids(labels)
        if len(wanted) > MAX_LABEL_IDS:
            raise ValueError(f"at most {MAX_LABEL_IDS} labels per call for vLLM, got {len(wanted)}")
        out = np.full((len(prompts), len(wanted)), MISSING_LOGPROB, dtype=np.float32)
        n_tokens = calls = 0
        for start in range(0, len(prompts), self.max_prompts_per_request):
            chunk = prompts[start:start + self.max_prompts_per_request]
            if keep is not None and not any(keep(i) for i in range(start, start + len(chunk))):
                out[start:start + len(chunk)] = np.nan
                continue
            ids = [a + b for a, b in map(self.encode, chunk)]
            body = self._post({"model": self.served_model, "prompt": ids, "max_tokens": 1, "temperature": 0,
                               "logprobs": TOP_K, "logprob_token_ids": wanted,
                               "return_tokens_as_token_ids": True})
            out[start:start + len(chunk)] = self._parse(body, len(chunk), wanted)
            n_tokens += _uncached_tokens(body, sum(map(len, ids)))
            calls += 1
        return ScoreBatch(logprobs=out, forward_tokens=n_tokens, calls=calls)

    def _ids(self, text: str) -> list[int]:
        with self._tok_lock:
            return tokens.encode_text(self.tokenizer, text)

    def close(self) -> None:
        self._client.close()

    def _post(self, payload: dict) -> dict:
        try:
            resp = self._client.post(self.url, json=payload)
        except httpx.TimeoutException as e:
            raise EngineError(f"vLLM at {self.url} timed out after {self._client.timeout.read}s") from e
        except httpx.HTTPError as e:
            raise EngineError(f"vLLM at {self.url} unreachable: {e}") from e
        if resp.status_code != 200:
            raise EngineError(f"vLLM at {self.url} answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            return resp.json()
        except ValueError as e:
            raise EngineError(f"vLLM at {self.url} answered non-JSON: {resp.text[:200]}") from e

    def _parse(self, body: dict, n: int, wanted: list[int]) -> np.ndarray:
        rows = np.full((n, len(wanted)), MISSING_LOGPROB, dtype=np.float32)
        choices = body.get("choices")
        if not isinstance(choices, list) or len(choices) != n:
            raise EngineError(f"vLLM returned {len(choices) if isinstance(choices, list) else 'no'} choices "
                              f"for {n} prompts")
        by_text = {self.tokenizer.decode([t]): j for j, t in enumerate(wanted)}  # old servers: text keys
        by_id = {t: j for j, t in enumerate(wanted)}
        for choice in choices:
            i = choice.get("index")
            if not isinstance(i, int) or not 0 <= i < n:
                raise EngineError(f"vLLM choice index {i!r} outside 0..{n - 1}")
            try:
                top = choice["logprobs"]["top_logprobs"][0]
            except (KeyError, IndexError, TypeError) as e:
                raise EngineError(f"vLLM choice {i} has no logprobs.top_logprobs[0]") from e
            for key, value in top.items():
                if key.startswith("token_id:"):
                    j = by_id.get(int(key.removeprefix("token_id:")))
                else:
                    j = by_text.get(key)
                if j is not None and value is not None:
                    rows[i, j] = float(value)
        return rows


def _uncached_tokens(body: dict, sent: int) -> int:
    """Prompt tokens the server actually computed, when it reports its prefix-cache hits
    (``--enable-prompt-tokens-details``); otherwise every token sent."""
    usage = body.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return max(0, int(usage.get("prompt_tokens", sent)) - int(cached))
