"""Tiny random causal LMs, saved with the bundled model's tokenizer: other architectures, for
checking that nothing in the engine or the tuner assumes Llama (a user may set
RECRANKER_BASE_MODEL to any Hugging Face causal LM), and a tiny Llama for exactness checks
whose property does not depend on the model's size (packing, masks), in a second instead
of a 135M-parameter backward. Weights are drawn wide (std 0.3), so the
outputs depend strongly on the context and a wrong position or mask shows."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

ARCHITECTURES = {
    "llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True),
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048),
    "gemma": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=16, max_position_embeddings=2048),
    "gpt_neox": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=2048),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=2048),
}


def tiny_model(kind: str, tokenizer_dir: Path, out: Path) -> Path:
    """A random ``kind`` model with the tokenizer of ``tokenizer_dir``, saved to ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = AutoConfig.for_model(kind, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, **ARCHITECTURES[kind])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() >= 2:
                weight.normal_(0.0, 0.3)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
