"""A real service process with a fast fake engine, for tests that need processes over HTTP
(Prometheus scraping a running service, replicas sharing one Redis).

    python -m tests.service.fake_engine_app --port P --data-dir D --redis-url URL --key-prefix K

Everything but the LLM is real: the app from create_app, ML-100K, a popularity backbone
behind the exact index, the Redis user store and cache, uvicorn. The engine answers at
once with label probabilities that depend on the prompt text (label mass 0.9); a
candidate whose title contains FAIL_MARK makes it raise EngineError, so a test can cause
degraded answers on purpose. The real model is not used: loading it in two extra
processes would cost a minute and gigabytes, and these tests are about the processes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from ranker.engines.base import Engine, EngineError, ScoreBatch, ScoringPrompt

FAIL_MARK = "FAIL-ENGINE"
REPO = Path(__file__).resolve().parents[2]


class FastFakeEngine(Engine):
    model_name = "fast-fake"

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        return list(range(len(labels)))

    def chat_template(self, system: str, user: str) -> str:
        return f"<sys>{system}</sys><user>{user}</user><assistant>"

    def score(self, prompts: Sequence[ScoringPrompt], labels: Sequence[str]) -> ScoreBatch:
        if any(FAIL_MARK in p.suffix or FAIL_MARK in p.prefix for p in prompts):
            raise EngineError(f"fake engine told to fail ({FAIL_MARK} in a prompt)")
        rows = []
        for p in prompts:
            seed = zlib.crc32((p.prefix + p.suffix).encode())
            w = np.random.default_rng(seed).random(len(labels)) + 0.1
            rows.append(np.log(0.9 * w / w.sum()))
        tokens = sum(len(p.prefix) + len(p.suffix) for p in prompts) // 4
        return ScoreBatch(logprobs=np.array(rows), forward_tokens=tokens, calls=len({p.prefix for p in prompts}))


def build_app(data_dir: Path, home: Path, redis_url: str, key_prefix: str):
    from candidate_gen.data import load_movielens_100k
    from candidate_gen.pop import PopBackbone
    from candidate_gen.retrieve import CandidateGenerator
    from candidate_gen.split import leave_one_out
    from ranker.ensemble import EnsembleWeights
    from ranker.ranker import Ranker
    from stack.settings import Settings, ranker_config
    from service.main import create_app
    from service.pipeline import ServedModel
    from service.resources import Resources

    settings = Settings(_env_file=None, home=home, data_dir=data_dir, backbone="pop", adapter=None,
                        redis_url=redis_url, num_candidates=5, top_k=3, cache_ttl_s=300, microbatch=True,
                        microbatch_max_wait_ms=2.0, request_timeout_s=30.0, pairwise_budget=2, listwise_shuffles=1)
    dataset = load_movielens_100k(data_dir / "ml-100k")
    split = leave_one_out(dataset)
    _, items = split.train_interactions()
    backbone = PopBackbone.fit(items, dataset.n_items)
    generator = CandidateGenerator.from_backbone(backbone, "exact")
    engine = FastFakeEngine()
    ranker = Ranker(engine, ranker_config(settings), EnsembleWeights())
    served = ServedModel(engine.model_name, None, None, "pop", dataset.fingerprint)
    resources = Resources(dataset, split, backbone, generator, engine, ranker, served)
    return create_app(settings, resources=resources, key_prefix=key_prefix)


# --- for the tests: start processes and wait for them --------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check()`` until it returns a truthy value; fail with the process log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not reached within {timeout:.0f}s (exit code {proc.poll() if proc else None})\n{tail}")


def start_service(tmp: Path, data_dir: Path, redis_url: str, key_prefix: str, name: str) -> tuple[subprocess.Popen, str]:
    """One service process on a free loopback port; returns it and its base URL once ready."""
    port = free_port()
    log = tmp / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tests.service.fake_engine_app", "--port", str(port), "--data-dir", str(data_dir),
           "--home", str(tmp / name), "--redis-url", redis_url, "--key-prefix", key_prefix]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(url + "/healthz", timeout=1).status_code == 200, 90, f"{name} up", proc, log)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--key-prefix", required=True)
    args = p.parse_args()
    app = build_app(args.data_dir, args.home, args.redis_url, args.key_prefix)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
