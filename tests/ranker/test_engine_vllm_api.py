"""The vLLM engine against vLLM's documented OpenAI-compatible completions API.

tests/ranker/fixtures/vllm_completions.json holds what vLLM documents (its "_source" names
the files and the commit): every field CompletionRequest accepts, the types and rules of
those the engine sends (logprob_token_ids needs logprobs, ids >= 0, ...), the LoRA serving
convention (`--lora-modules NAME=PATH`, then `"model": NAME`), and a response in the
CompletionResponse layout. No vLLM runs here (no GPU): the engine's HTTP calls go to an
in-process transport that records each request and answers with the fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import yaml

from ranker.engines.base import ScoringPrompt
from stack.build import build_engine, resolve_adapter
from stack.settings import Settings

REPO = Path(__file__).resolve().parents[2]
API = json.loads((REPO / "tests/ranker/fixtures/vllm_completions.json").read_text())


def _compose_gpu() -> tuple[dict, list[str]]:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return services["recranker-gpu"]["environment"], [str(c) for c in services["vllm"]["command"]]


def _lora_module_name(cmd: list[str]) -> str:
    i = cmd.index("--lora-modules")
    return cmd[i + 1].split("=", 1)[0]


class Recorder:
    """An httpx transport standing in for the server: records requests, answers ``reply``."""

    def __init__(self, reply: dict) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.reply)


@pytest.fixture
def engine_and_server(model_dir: Path, monkeypatch):
    """The engine as the compose gpu profile configures the service (RECRANKER_ENGINE=vllm,
    RECRANKER_VLLM_MODEL = the served base model, the default shipped adapter), built by the
    composition root."""
    env, _ = _compose_gpu()
    settings = Settings(_env_file=None, engine=env["RECRANKER_ENGINE"], vllm_url=env["RECRANKER_VLLM_URL"],
                        vllm_model=env["RECRANKER_VLLM_MODEL"], base_model=str(model_dir))
    engine = build_engine(settings, resolve_adapter(settings))
    server = Recorder(API["response"])
    monkeypatch.setattr(engine, "_client", httpx.Client(transport=httpx.MockTransport(server)))
    yield engine, server
    engine.close()


def _prompts(engine, n: int = 2) -> list[ScoringPrompt]:
    out = []
    for i in range(n):
        prefix, suffix = engine.chat_template("Answer Yes or No.", f"History: Heat, Fargo.\n\u2063Item {i}?").split("\u2063")
        out.append(ScoringPrompt(prefix, suffix))
    return out


def test_requests_use_only_documented_fields_with_documented_types(engine_and_server) -> None:
    engine, server = engine_and_server
    engine.score(_prompts(engine), ("Yes", "No"))
    (req,) = server.requests
    assert req.method == "POST" and req.url.path == "/v1/completions"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.content)
    unknown = set(body) - set(API["request_fields"])
    assert not unknown, f"fields vLLM's CompletionRequest does not have: {unknown}"
    jsonschema.validate(body, API["request_schema"])
    # one generated token, greedy, whose log-probabilities are read
    assert body["max_tokens"] == 1 and body["temperature"] == 0
    # the labels' ids explicitly, as token-id keys (no decoding ambiguity)
    assert body["logprob_token_ids"] == engine.label_token_ids(("Yes", "No"))
    assert body["return_tokens_as_token_ids"] is True
    # vLLM rejects logprobs above the server's --max-logprobs: the compose file sets it
    _, cmd = _compose_gpu()
    limit = int(next(a.split("=", 1)[1] for a in cmd if a.startswith("--max-logprobs=")))
    assert body["logprobs"] <= limit
    # prompt_logprobs would disable prefix-cache reads for the request
    assert "prompt_logprobs" not in body


def test_the_model_field_names_the_lora_module_like_the_documented_example(engine_and_server) -> None:
    engine, server = engine_and_server
    example = API["lora_serving_example"]
    # the documented convention: the name before '=' in --lora-modules is the request's model
    assert example["request"]["model"] == _lora_module_name(example["serve"])
    engine.score(_prompts(engine), ("Yes", "No"))
    _, cmd = _compose_gpu()
    # the service names its adapter by its folder name: the module name compose gives vLLM
    assert json.loads(server.requests[0].content)["model"] == _lora_module_name(cmd) == engine.adapter_name


def test_documented_response_is_read_by_choice_index(engine_and_server) -> None:
    engine, _ = engine_and_server
    labels = tuple(API["labels"])
    assert engine.label_token_ids(labels) == list(API["labels"].values()), "fixture ids are the bundled tokenizer's"
    jsonschema.validate(API["response"], API["response_schema"])
    batch = engine.score(_prompts(engine), labels)
    # choices come back out of order in the fixture (index 1 first): rows follow "index"
    np.testing.assert_allclose(batch.logprobs, [[-0.125, -2.5], [-1.625, -0.25]])
    usage = API["response"]["usage"]
    assert batch.forward_tokens == usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]
    assert batch.calls == 1


@pytest.mark.parametrize("mode", ["ok", "old"])
def test_the_stand_in_server_of_the_engine_tests_answers_in_the_documented_layout(mode, model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tests.ranker.test_engine_vllm import FakeVLLM

    fake = FakeVLLM(AutoTokenizer.from_pretrained(model_dir))
    try:
        fake.mode = mode
        reply = fake.answer({"model": "recranker", "prompt": [[1, 2, 3], [4, 5]], "logprobs": 20,
                             "logprob_token_ids": list(API["labels"].values())})
    finally:
        fake.close()
    jsonschema.validate(reply, API["response_schema"])
