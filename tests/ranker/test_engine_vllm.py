"""VLLMEngine against a local HTTP server answering in vLLM's /v1/completions shape.

The server is a stand-in for `vllm serve` (no GPU here): it follows vLLM's
CompletionLogProbs layout (choices[i].logprobs.top_logprobs[0] = {token: logprob}, keys
"token_id:<id>" under return_tokens_as_token_ids) and can act like an older server that
ignores logprob_token_ids, fail with HTTP 500, or stall.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ranker.engines.base import EngineError, LabelError, ScoringPrompt
from ranker.engines.factory import create_engine
from ranker.engines.vllm import MISSING_LOGPROB, VLLMEngine


def fake_logprob(prompt_ids: list[int], token_id: int) -> float:
    """Deterministic stand-in for the model: depends on both the prompt and the token."""
    return -round(0.5 + (token_id % 7) * 0.25 + len(prompt_ids) / 1000, 4)


class FakeVLLM:
    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.mode = "ok"
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, **body})
                if fake.mode == "slow":
                    time.sleep(1.0)
                if fake.mode == "error":
                    return self._send(500, {"error": {"message": "CUDA out of memory", "code": 500}})
                self._send(200, fake.answer(body))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: dict) -> dict:
        choices = []
        for i, ids in enumerate(body["prompt"]):
            sampled = 42
            if self.mode == "old":  # ignores logprob_token_ids: top-k with decoded text keys
                ranked = sorted(range(400), key=lambda t: -fake_logprob(ids, t))[: body["logprobs"]]
                top = {self.tokenizer.decode([t]): fake_logprob(ids, t) for t in ranked}
            else:
                wanted = [sampled, *body["logprob_token_ids"]]
                top = {f"token_id:{t}": fake_logprob(ids, t) for t in wanted}
            choices.append({"index": i, "text": "x", "finish_reason": "length",
                            "logprobs": {"tokens": [f"token_id:{sampled}"], "text_offset": [0],
                                         "token_logprobs": [fake_logprob(ids, sampled)], "top_logprobs": [top]}})
        n = sum(map(len, body["prompt"]))
        return {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()), "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": n, "completion_tokens": len(choices), "total_tokens": n + len(choices)}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_server(model_dir: Path):
    from transformers import AutoTokenizer

    server = FakeVLLM(AutoTokenizer.from_pretrained(model_dir))
    yield server
    server.close()


@pytest.fixture
def fake(fake_server: FakeVLLM) -> FakeVLLM:
    fake_server.mode = "ok"
    fake_server.requests.clear()
    return fake_server


@pytest.fixture(scope="module")
def engine(fake_server: FakeVLLM, model_dir: Path):
    eng = VLLMEngine(fake_server.url, "recranker-lora", model_dir, timeout=0.3)
    yield eng
    eng.close()


def _prompts(engine: VLLMEngine) -> list[ScoringPrompt]:
    out = []
    for shared, spec in [("History: Heat, Fargo.\n", "Heat 2?"), ("History: Heat, Fargo.\n", "A much longer title?"),
                         ("Other user.\n", "Toy Story?")]:
        prefix, suffix = engine.chat_template("Rank movies.", shared + "\u2063" + spec).split("\u2063")
        out.append(ScoringPrompt(prefix, suffix))
    return out


def test_request_shape_and_parsing(fake: FakeVLLM, engine: VLLMEngine) -> None:
    prompts = _prompts(engine)
    labels = ("Yes", "No")
    batch = engine.score(prompts, labels)
    (req,) = fake.requests
    label_ids = engine.label_token_ids(labels)
    assert req["path"] == "/v1/completions"
    assert (req["model"], req["max_tokens"], req["temperature"]) == ("recranker-lora", 1, 0)
    assert req["logprob_token_ids"] == label_ids and req["logprobs"] >= len(labels)
    assert req["return_tokens_as_token_ids"] is True and "prompt_logprobs" not in req
    sent = [a + b for a, b in map(engine.encode, prompts)]
    assert req["prompt"] == sent
    expected = [[fake_logprob(ids, t) for t in label_ids] for ids in sent]
    np.testing.assert_allclose(batch.logprobs, expected, atol=1e-6)
    assert batch.calls == 1 and batch.forward_tokens == sum(map(len, sent))


def test_tokenization_matches_the_in_process_engine(engine: VLLMEngine, hf_engine) -> None:
    p = _prompts(engine)[0]
    assert engine.encode(p) == hf_engine.encode(p)
    assert engine.chat_template("s", "u") == hf_engine.chat_template("s", "u")
    assert engine.label_token_ids(tuple("ABCDEFGHIJKLMNOPQRST")) == hf_engine.label_token_ids(tuple("ABCDEFGHIJKLMNOPQRST"))
    with pytest.raises(LabelError):
        engine.label_token_ids(["Yes", "Definitely"])


def test_old_server_top_k_fallback(fake: FakeVLLM, engine: VLLMEngine) -> None:
    fake.mode = "old"
    prompts = _prompts(engine)[:1]
    labels = tuple("12345")  # some of these fall outside the fake's top-20
    got = engine.score(prompts, labels).logprobs[0]
    ids = sum(engine.encode(prompts[0]), [])
    top = sorted(range(400), key=lambda t: -fake_logprob(ids, t))[:20]
    for value, tid in zip(got, engine.label_token_ids(labels)):
        assert value == pytest.approx(fake_logprob(ids, tid) if tid in top else MISSING_LOGPROB)
    assert MISSING_LOGPROB in got and (got > MISSING_LOGPROB).any()


def test_chunks_prompts_into_several_requests(fake: FakeVLLM, engine: VLLMEngine, monkeypatch) -> None:
    monkeypatch.setattr(engine, "max_prompts_per_request", 2)
    prompts = _prompts(engine)
    whole = [[fake_logprob(a + b, t) for t in engine.label_token_ids(("Yes", "No"))]
             for a, b in map(engine.encode, prompts)]
    batch = engine.score(prompts, ("Yes", "No"))
    assert batch.calls == 2 and [len(r["prompt"]) for r in fake.requests] == [2, 1]
    np.testing.assert_allclose(batch.logprobs, whole, atol=1e-6)


def test_http_error_timeout_and_refused(fake: FakeVLLM, engine: VLLMEngine, model_dir: Path) -> None:
    prompts = _prompts(engine)[:1]
    fake.mode = "error"
    with pytest.raises(EngineError, match="HTTP 500.*CUDA out of memory"):
        engine.score(prompts, ("Yes", "No"))
    fake.mode = "slow"
    with pytest.raises(EngineError, match="timed out"):
        engine.score(prompts, ("Yes", "No"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = create_engine("vllm", base_url=f"http://127.0.0.1:{port}", model="m", tokenizer_path=model_dir, timeout=1)
    with pytest.raises(EngineError, match="unreachable"):
        closed.score(prompts, ("Yes", "No"))


def test_factory_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown engine kind 'llamacpp'"):
        create_engine("llamacpp", model_path="x")
