"""In-process transformers engine: one forward pass per prompt, prefix KV cache shared.

Prompts of a request share a long prefix (instructions + user history) and differ in a
short suffix (candidate + question). ``score`` runs each distinct prefix once, then runs
its suffixes PACKED into one row on top of that KV cache: a block-causal mask lets each
suffix token see the prefix and its own suffix only, position ids restart after the
prefix for every suffix, and only each suffix's last-token logits are projected onto the
vocabulary. Measured on CPU this beat a padded batch over a copied (expanded) cache by
~1.5x: no B copies of the prefix K/V, no padding. ``reuse_prefix=False`` runs the full
prompts as left-padded batches instead (the baseline and a cross-check).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ranker.engines import tokens
from ranker.engines.base import Engine, EngineError, ScoreBatch, ScoringPrompt
from ranker.model import ModelError, model_info

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class HFEngine(tokens.LocalTokenizerMixin, Engine):
    """transformers causal LM (+ optional PEFT adapter) scoring next-token log-probabilities.

    device: "auto" (CUDA when present, else CPU), "cpu" or "cuda".
    dtype: None = bfloat16 on CUDA, float32 on CPU; or a torch dtype / its name.
    max_batch_tokens: full-prompt mode: bound on rows x longest prompt per forward pass.
    reuse_prefix: default scoring mode (False runs every full prompt, for comparison).
    pack_tokens: prefix-reuse mode: suffix tokens per forward pass (attention over a pack
        grows with its square, so very large packs stop paying off).
    """

    def __init__(
        self,
        model_path: str | Path,
        adapter_path: str | Path | None = None,
        device: str = "auto",
        dtype: torch.dtype | str | None = None,
        max_batch_tokens: int = 16384,
        reuse_prefix: bool = True,
        pack_tokens: int = 1024,
    ) -> None:
        if max_batch_tokens < 1 or pack_tokens < 1:
            raise ValueError(f"max_batch_tokens and pack_tokens must be >= 1, got {max_batch_tokens}, {pack_tokens}")
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.max_batch_tokens = max_batch_tokens
        self.pack_tokens = pack_tokens
        self.reuse_prefix = reuse_prefix
        self.model_path = model_path
        self.model_name = Path(model_path).name if Path(model_path).is_dir() else str(model_path)
        tokenizer, model = _load(model_path, self.device, self.dtype)
        self._init_text(tokenizer)
        self.adapter_name: str | None = None
        self.adapter_revision: str | None = None
        if adapter_path is not None:
            model = self._attach_adapter(model, Path(adapter_path))
        self.model = model.eval()  # PeftModel when an adapter is loaded
        # LoRA layers are injected into the base module, so calling it directly runs them too
        self._net = model.get_base_model() if adapter_path is not None else model
        params = inspect.signature(self._net.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5
        self._pad_id = _pad_id(self.tokenizer)
        self._lock = threading.Lock()  # one forward at a time: service workers share the engine

    # ---- scoring ------------------------------------------------------------------------

    def score(
        self, prompts: Sequence[ScoringPrompt], labels: Sequence[str], reuse_prefix: bool | None = None
    ) -> ScoreBatch:
        wanted = self.label_token_ids(labels)
        reuse = self.reuse_prefix if reuse_prefix is None else reuse_prefix
        out = np.zeros((len(prompts), len(wanted)), dtype=np.float32)
        if not prompts:
            return ScoreBatch(logprobs=out, forward_tokens=0, calls=0)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p.prefix, []).append(i)
        ids_t = torch.tensor(wanted, device=self.device)
        with self._lock, torch.inference_mode():
            prefix_ids = {prefix: self._ids(prefix) for prefix in groups}
            suffix_ids = [self._ids(p.suffix) for p in prompts]
            if any(not s for s in suffix_ids):
                raise ValueError("a prompt suffix is empty: the candidate text must follow the prefix")
            try:
                if not reuse:
                    seqs = [prefix_ids[p.prefix] + s for p, s in zip(prompts, suffix_ids)]
                    out[:], n_tokens, calls = self._score_full(seqs, ids_t)
                    return ScoreBatch(logprobs=out, forward_tokens=n_tokens, calls=calls)
                n_tokens = calls = 0
                for prefix, idxs in groups.items():
                    suffixes = [suffix_ids[i] for i in idxs]
                    if prefix_ids[prefix]:
                        rows, n_tok, n_calls = self._score_shared(prefix_ids[prefix], suffixes, ids_t)
                    else:  # nothing to share
                        rows, n_tok, n_calls = self._score_full(suffixes, ids_t)
                    out[idxs] = rows
                    n_tokens, calls = n_tokens + n_tok, calls + n_calls
            except Exception as e:  # torch/transformers failures (OOM, shape bugs) surface as EngineError
                raise EngineError(f"{self.model_name} failed to score {len(prompts)} prompts: {e}") from e
        return ScoreBatch(logprobs=out, forward_tokens=n_tokens, calls=calls)

    def _score_shared(self, prefix: list[int], suffixes: list[list[int]], label_ids: torch.Tensor):
        from transformers import DynamicCache

        n_prefix = len(prefix)
        cache = DynamicCache()  # full (non-sliding) layers: the packs below need every position
        self._net(input_ids=torch.tensor([prefix], device=self.device), use_cache=True,
                  logits_to_keep=1, **{self._cache_kw: cache})
        kv = [(layer.keys, layer.values) for layer in cache.layers]  # each (1, H, P, D)
        rows = np.zeros((len(suffixes), len(label_ids)), dtype=np.float32)
        calls = 1
        for pack in self._packs([len(s) for s in suffixes]):
            ids, mask, pos, last = self._pack([suffixes[i] for i in pack], n_prefix)
            # a fresh cache object per pack; its update() concatenates into new tensors,
            # so the prefix K/V are never written to
            logits = self._net(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                               logits_to_keep=last, **{self._cache_kw: DynamicCache(kv)}).logits  # (1, n, V)
            rows[pack] = _gather(logits[0], label_ids)
            calls += 1
        return rows, n_prefix + sum(len(s) for s in suffixes), calls

    def _packs(self, lengths: list[int]) -> list[list[int]]:
        """Consecutive indices whose suffixes fit in one pack of ``pack_tokens``."""
        packs: list[list[int]] = [[]]
        used = 0
        for i, n in enumerate(lengths):
            if packs[-1] and used + n > self.pack_tokens:
                packs.append([])
                used = 0
            packs[-1].append(i)
            used += n
        return packs

    def _pack(self, suffixes: list[list[int]], n_prefix: int):
        """One row holding several suffixes after the cached prefix. Each token sees the
        whole prefix and the earlier tokens of its own suffix only (block-causal mask), at
        the positions it would have alone, so every suffix is scored as if run by itself."""
        lens = torch.tensor([len(s) for s in suffixes])
        seg = torch.repeat_interleave(torch.arange(len(suffixes)), lens)  # (T,) suffix of each token
        within = torch.cat([torch.arange(n) for n in lens.tolist()])  # (T,) position inside it
        own = (seg[:, None] == seg[None, :]) & (within[:, None] >= within[None, :])  # (T, T)
        mask = torch.cat([torch.ones(len(seg), n_prefix, dtype=torch.bool), own], 1)[None, None]  # (1,1,T,P+T)
        ids = torch.tensor([[t for s in suffixes for t in s]])
        last = lens.cumsum(0) - 1  # (n,) index of each suffix's last token
        dev = self.device
        return ids.to(dev), mask.to(dev), (within + n_prefix)[None].to(dev), last.to(dev)

    def _score_full(self, seqs: list[list[int]], label_ids: torch.Tensor):
        rows = np.zeros((len(seqs), len(label_ids)), dtype=np.float32)
        calls = 0
        for chunk in self._chunks([len(s) for s in seqs]):
            batch = [seqs[i] for i in chunk]
            ids, mask, pos = self._left_pad(batch)
            logits = self._net(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                               logits_to_keep=1).logits  # (B, 1, V)
            rows[chunk] = _gather(logits[:, -1], label_ids)
            calls += 1
        return rows, sum(len(s) for s in seqs), calls

    def _chunks(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped into batches of similar length within the token budget."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        chunks: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            # order is ascending, so lengths[i] is the widest row of cur + [i]
            if cur and (len(cur) + 1) * lengths[i] > self.max_batch_tokens:
                chunks.append(cur)
                cur = []
            cur.append(i)
        return chunks + [cur] if cur else chunks

    def _left_pad(self, seqs: list[list[int]]):
        """Left padding puts every last token in the last column (logits_to_keep=1);
        position ids start at 0 on each row's first real token."""
        b, width = len(seqs), max(len(s) for s in seqs)
        ids = torch.full((b, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        pos = torch.zeros((b, width), dtype=torch.long)
        for r, s in enumerate(seqs):
            n = len(s)
            ids[r, width - n:] = torch.tensor(s)
            mask[r, width - n:] = 1
            pos[r, width - n:] = torch.arange(n)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    # ---- generation (reference-style baseline) --------------------------------------------

    def generate(self, prompt_text: str, max_new_tokens: int = 64) -> str:
        """Greedy free generation from chat-formatted text (the reference code's way to rank)."""
        ids = torch.tensor([self._ids(prompt_text)], device=self.device)
        with self._lock, torch.inference_mode():
            out = self._net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=self._pad_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    # ---- metadata -----------------------------------------------------------------------

    @property
    def info(self) -> dict:
        return {"model": model_info(self.model_path), "adapter": self.adapter_name,
                "adapter_revision": self.adapter_revision, "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch.")}

    def _attach_adapter(self, model, path: Path):
        from peft import PeftModel

        if not (path / "adapter_config.json").is_file():
            raise ModelError(f"adapter folder {path} has no adapter_config.json")
        try:
            model = PeftModel.from_pretrained(model, str(path))
        except Exception as e:  # noqa: BLE001 - peft raises many types for a mismatched adapter
            raise ModelError(f"cannot load adapter {path} onto {self.model_name}: {e}") from e
        self.adapter_name = path.name
        self.adapter_revision = adapter_revision(path)
        log.info("adapter %s (revision %s) loaded", self.adapter_name, self.adapter_revision)
        return model


def adapter_revision(path: Path) -> str:
    """Short content hash of an adapter's config and weights: names the exact adapter served."""
    h = hashlib.sha256()
    files = [path / "adapter_config.json"] + sorted(path.glob("adapter_model.*"))
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


def _gather(logits: torch.Tensor, label_ids: torch.Tensor) -> np.ndarray:
    """(n, V) next-token logits -> (n, n_labels) log-probabilities over the full vocabulary."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp[:, label_ids].cpu().numpy()


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(device)


def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def _load(path: str | Path, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_weights(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        # sdpa takes the arbitrary 4D masks the packed scoring needs (flash-attention does not)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation="sdpa")
    except Exception as e:  # noqa: BLE001 - corrupt/missing files raise OSError, ValueError, SafetensorError...
        raise ModelError(f"cannot load model checkpoint {path}: {e}") from e
    if tok.chat_template is None:
        raise ModelError(f"tokenizer of {path} has no chat template: an instruction-tuned model is required")
    return tok, model.to(device)


def _check_weights(path: str | Path) -> None:
    """Read each local safetensors header (milliseconds) so a truncated or overwritten file
    fails here with its name, not deep inside from_pretrained after building the model."""
    if not Path(path).is_dir():
        return
    from safetensors import safe_open

    for f in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
        except Exception as e:  # noqa: BLE001 - SafetensorError, OSError
            raise ModelError(f"cannot load model checkpoint {path}: weights file {f.name} is corrupt ({e})") from e


def _pad_id(tok) -> int:
    # any id works (padded slots are masked out), but it must be a valid embedding row
    for cand in (tok.pad_token_id, tok.eos_token_id, 0):
        if cand is not None:
            return int(cand)
    return 0
