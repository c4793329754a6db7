"""The engine's prefix reuse and packing are exact for other architectures than Llama."""

from __future__ import annotations

import numpy as np
import pytest

from ranker.engines.hf import HFEngine
from tests.ranker.test_engine_hf import _mixed_prompts, _reference
from tests.tiny_models import ARCHITECTURES, tiny_model


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_prefix_reuse_and_packing_match_a_plain_forward(kind, model_dir, tmp_path) -> None:
    engine = HFEngine(tiny_model(kind, model_dir, tmp_path / kind), device="cpu", dtype="float32")
    prompts = _mixed_prompts(engine)  # two prefixes interleaved, suffixes of several lengths
    labels = ("Yes", "No")
    ref = np.stack([_reference(engine, p, labels) for p in prompts])
    assert np.ptp(ref[:, 0]) > 0.5  # the context matters to this model: a wrong mask or position would show
    reused = engine.score(prompts, labels, reuse_prefix=True)
    full = engine.score(prompts, labels, reuse_prefix=False)
    np.testing.assert_allclose(reused.logprobs, ref, atol=1e-4)
    np.testing.assert_allclose(full.logprobs, ref, atol=1e-4)
    assert reused.forward_tokens < full.forward_tokens  # the shared prefix ran once
