"""A fast deterministic engine and the service resources around it, for the fuzz and fault
suites (and bench_fuzz): thousands of requests must not each cost a real forward pass.

Everything else is real: ML-100K, a popularity backbone behind the exact index, the Ranker
and its ensemble, the service. The engine's faults are switched on per test (``fail``,
``hang_s``) to inject engine errors and hangs.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from candidate_gen.data import load_movielens_100k
from candidate_gen.pop import PopBackbone
from candidate_gen.retrieve import CandidateGenerator
from candidate_gen.split import leave_one_out
from ranker.engines.base import Engine, EngineError, ScoreBatch, ScoringPrompt
from ranker.ensemble import EnsembleWeights
from ranker.ranker import Ranker, RankerConfig
from service.pipeline import ServedModel
from service.resources import Resources


class FakeEngine(Engine):
    """Finite log-probabilities from a hash of each prompt: same prompt, same answer.

    ``fail``: every score() raises EngineError. ``hang_s``: every score() sleeps that long
    first (an engine stuck past the request timeout). ``release()`` ends a hang early.
    """

    model_name = "fake-engine"
    adapter_name = None

    def __init__(self) -> None:
        self.fail = False
        self.hang_s = 0.0
        self.calls = 0
        self._release = threading.Event()

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        return [zlib.crc32(label.encode()) % 50_000 for label in labels]

    def chat_template(self, system: str, user: str) -> str:
        return f"<system>{system}</system><user>{user}</user><assistant>"

    def score(self, prompts: Sequence[ScoringPrompt], labels: Sequence[str]) -> ScoreBatch:
        self.calls += 1
        if self.hang_s > 0:
            self._release.wait(self.hang_s)
        if self.fail:
            raise EngineError("injected engine failure")
        rows = []
        for p in prompts:
            rng = np.random.default_rng(zlib.crc32((p.prefix + "\x00" + p.suffix).encode()))
            logits = rng.normal(size=len(labels))
            probs = np.exp(logits) / np.exp(logits).sum() * 0.9  # 0.9 of the mass on the labels
            rows.append(np.log(probs))
        tokens = sum(self.count_tokens(p.prefix) + self.count_tokens(p.suffix) for p in prompts)
        return ScoreBatch(np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(labels)), tokens, 1)

    def release(self) -> None:
        self._release.set()
        self._release = threading.Event()


class FakeStack:
    """ML-100K, its split and a popularity backbone behind the exact index, loaded once;
    ``resources(engine)`` puts any engine (a fresh FakeEngine by default) on top."""

    def __init__(self, ml100k_dir: Path) -> None:
        self.dataset = load_movielens_100k(ml100k_dir)
        self.split = leave_one_out(self.dataset)
        _, items = self.split.train_interactions()
        self.backbone = PopBackbone.fit(items, self.dataset.n_items)
        self.generator = CandidateGenerator.from_backbone(self.backbone, "exact")

    def resources(self, engine: Engine | None = None, config: RankerConfig | None = None) -> Resources:
        engine = engine if engine is not None else FakeEngine()
        cfg = config if config is not None else RankerConfig(pairwise_budget=2, listwise_shuffles=1,
                                                             history_token_budget=64)
        ranker = Ranker(engine, cfg, EnsembleWeights())
        served = ServedModel(engine.model_name, None, None, "pop", self.dataset.fingerprint)
        return Resources(self.dataset, self.split, self.backbone, self.generator, engine, ranker, served)


def wait_until(predicate, timeout_s: float, every_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()
