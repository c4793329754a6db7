"""In-process transformers engine: one forward pass per prompt, prefix KV cache shared.

Prompts of a request share a long prefix (instructions + user history) and differ in a
short suffix (candidate + question). ``score`` runs each distinct prefix once, then runs
its suffixes PACKED into one row on top of that KV cache: a block-causal mask lets each
suffix token see the prefix and its own suffix only, position ids restart after the
prefix for every suffix, and only each suffix's last-token hidden state is projected onto
the vocabulary. Measured on CPU this beat a padded batch over a copied (expanded) cache by
~1.5x: no copy of the prefix K/V per suffix, no padding inside a row. Packs are small
(256 tokens, filled first-fit decreasing): attention inside a pack is computed for every
token pair and mostly masked away, so one 1,400-token pack spent as long on attention as
on all the matmuls; 256-token packs were 1.6-1.8x faster per request (bench/bench_packing.py).

Distinct prefixes (several users, as in a service micro-batch) go through together: all
prefixes as one right-padded batch, then all packed rows as one batch, each row over its
own prefix's K/V. A batch of N users thus costs two forward passes per call, not 2N,
which is what a GPU needs to serve N users for about the price of one.
``reuse_prefix=False`` runs the full prompts as left-padded batches instead (the
baseline and a cross-check).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ranker.adapter import Adapter, load_adapter
from ranker.engines import tokens
from ranker.engines.base import Engine, EngineError, Keep, ScoreBatch, ScoringPrompt
from ranker.engines.packed import PACK_TOKENS, balanced_packs, extend_kv, pack_rows, prefix_kv, rows_hidden
from ranker.engines.prefix_cache import LayerKV, PrefixCache, prefix_key
from ranker.model import ModelError, model_info

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class HFEngine(tokens.LocalTokenizerMixin, Engine):
    """transformers causal LM (+ optional PEFT adapter) scoring next-token log-probabilities.

    device: "auto" (CUDA when present, else CPU), "cpu" or "cuda".
    dtype: None or "auto" = ``auto_dtype`` (bfloat16 on CUDA and on CPUs with bf16 matrix
        units, float32 elsewhere); or a torch dtype / its name.
    max_batch_tokens: bound on the tokens one forward pass attends over: rows x longest row
        for prefixes and full prompts, rows x (longest prefix + longest pack) for packs.
    reuse_prefix: default scoring mode (False runs every full prompt, for comparison).
    pack_tokens: suffix tokens per packed row (attention inside a pack grows with its
        square, so very large packs stop paying off).
    plan_packs: how a prompt group's suffixes are grouped into packs, given their lengths
        and ``pack_tokens`` (``ranker.engines.packed``: balanced by default, first-fit to
        compare).
    prefix_cache_bytes: bound of the LRU that keeps computed prefixes (a user's history
        K/V) across calls, and their stems (``ScoringPrompt.stem``); 0 disables it.
    merge_adapter: fold the LoRA update into the base weights at load (W + BA), so a
        forward pass runs the base model's matmuls only; False keeps the LoRA layers
        separate (extra small matmuls, casts and adds in every projection).
    """

    def __init__(
        self,
        model_path: str | Path,
        adapter_path: str | Path | None = None,
        device: str = "auto",
        dtype: torch.dtype | str | None = None,
        max_batch_tokens: int = 16384,
        reuse_prefix: bool = True,
        pack_tokens: int = PACK_TOKENS,
        adapter: Adapter | None = None,
        prefix_cache_bytes: int = 0,
        merge_adapter: bool = True,
        plan_packs: Callable[[Sequence[int], int], list[list[int]]] = balanced_packs,
    ) -> None:
        if max_batch_tokens < 1 or pack_tokens < 1:
            raise ValueError(f"max_batch_tokens and pack_tokens must be >= 1, got {max_batch_tokens}, {pack_tokens}")
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.bf16_units = bf16_units(cpu_flags()) if self.device.type == "cpu" else None
        self.max_batch_tokens = max_batch_tokens
        self.pack_tokens = pack_tokens
        self.plan_packs = plan_packs
        self.reuse_prefix = reuse_prefix
        self.model_path = model_path
        self.model_name = Path(model_path).name if Path(model_path).is_dir() else str(model_path)
        self._model_record = model_info(model_path)  # read once: /readyz reads ``info`` on every probe
        tokenizer, model = _load(model_path, self.device, self.dtype)
        self._init_text(tokenizer)
        if adapter is None and adapter_path is not None:  # a bare folder: resolve it here
            adapter = load_adapter(adapter_path)
        self.adapter = adapter
        self.adapter_name: str | None = None
        self.adapter_revision: str | None = None
        self.adapter_merged = False
        if adapter is not None:
            model = self._attach_adapter(model, adapter)
            if merge_adapter:
                model = model.merge_and_unload()
                self.adapter_merged = True
        self.model = model.eval()  # PeftModel when an adapter is loaded and kept apart
        # LoRA layers are injected into the base module, so calling it directly runs them too
        self._net = model.get_base_model() if adapter is not None and not merge_adapter else model
        self._decoder = self._net.get_decoder()  # the transformer body: hidden states, no vocabulary
        head = self._net.get_output_embeddings()
        self._head_weight = head.weight.detach().float()  # a float32 copy only when the body is not
        self._head_bias = None if getattr(head, "bias", None) is None else head.bias.detach().float()
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self._pad_id = _pad_id(self.tokenizer)
        self._lock = threading.Lock()  # one forward at a time: service workers share the engine

    # ---- scoring ------------------------------------------------------------------------

    def score(
        self, prompts: Sequence[ScoringPrompt], labels: Sequence[str], reuse_prefix: bool | None = None,
        keep: Keep | None = None,
    ) -> ScoreBatch:
        """``keep`` (optional): checked before every forward pass; a prefix whose prompts are
        all unwanted is not run, nor is a packed row whose suffixes all are. Their rows come
        back NaN and their tokens are not counted. A pass already running finishes."""
        wanted = self.label_token_ids(labels)
        reuse = self.reuse_prefix if reuse_prefix is None else reuse_prefix
        out = np.full((len(prompts), len(wanted)), np.nan, dtype=np.float32)  # NaN until scored
        if not prompts or (keep is not None and not any(keep(i) for i in range(len(prompts)))):
            return ScoreBatch(logprobs=out, forward_tokens=0, calls=0)
        groups: dict[str, list[int]] = {}
        stem_chars: dict[str, int] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p.prefix, []).append(i)
            stem_chars.setdefault(p.prefix, p.stem)
        ids_t = torch.tensor(wanted, device=self.device)
        with self._lock, torch.inference_mode():
            prefix_ids = {prefix: self._ids(prefix) for prefix in groups}
            suffix_ids = [self._ids(p.suffix) for p in prompts]
            if any(not s for s in suffix_ids):
                raise ValueError("a prompt suffix is empty: the candidate text must follow the prefix")
            try:
                if not reuse:
                    seqs = [prefix_ids[p.prefix] + s for p, s in zip(prompts, suffix_ids)]
                    out[:], n_tokens, calls = self._score_full(seqs, ids_t, keep)
                    return ScoreBatch(logprobs=out, forward_tokens=n_tokens, calls=calls)
                shared = [(prefix, idxs) for prefix, idxs in groups.items() if prefix_ids[prefix]]
                keep_in_group = None if keep is None else (lambda g, i: keep(shared[g][1][i]))
                rows, n_tokens, calls = self._score_groups(
                    [prefix_ids[prefix] for prefix, _ in shared],
                    [self._stem_tokens(prefix, prefix_ids[prefix], stem_chars[prefix]) for prefix, _ in shared],
                    [[suffix_ids[i] for i in idxs] for _, idxs in shared], ids_t, keep_in_group)
                for (_, idxs), group_rows in zip(shared, rows):
                    out[idxs] = group_rows
                alone = [i for prefix, idxs in groups.items() if not prefix_ids[prefix] for i in idxs]
                if alone:  # nothing to share
                    out[alone], n_tok, n_calls = self._score_full(
                        [suffix_ids[i] for i in alone], ids_t, None if keep is None else (lambda j: keep(alone[j])))
                    n_tokens, calls = n_tokens + n_tok, calls + n_calls
            except Exception as e:  # torch/transformers failures (OOM, shape bugs) surface as EngineError
                raise EngineError(f"{self.model_name} failed to score {len(prompts)} prompts: {e}") from e
        return ScoreBatch(logprobs=out, forward_tokens=n_tokens, calls=calls)

    def _stem_tokens(self, prefix: str, ids: list[int], stem_chars: int) -> int:
        """Tokens of ``prefix``'s stem (its user part), 0 when it has none, when no cache
        would keep it, or when the stem's own tokens are not the prefix's first tokens (a
        token spanning the boundary): then the prefix is cached only whole."""
        if not stem_chars or not self.prefix_cache.max_bytes:
            return 0
        stem = self._ids(prefix[:stem_chars])
        return len(stem) if 0 < len(stem) < len(ids) and ids[:len(stem)] == stem else 0

    def _score_groups(self, prefixes: list[list[int]], stems: list[int], suffix_groups: list[list[list[int]]],
                      label_ids: torch.Tensor, keep: Callable[[int, int], bool] | None = None):
        """Each group's suffixes scored on its own cached prefix, many groups per forward pass.

        Prefixes of several groups (several users, in a service micro-batch) run as one
        right-padded batch; then rows, each one group's pack of suffixes, run as one batch on
        top of their own group's K/V. Few large passes instead of two per group is what lets
        a GPU serve several users for the price of one; on a CPU it costs about the same.
        ``keep(group, i)``: whether suffix i of a group is still wanted, asked before each
        pass; unwanted work is skipped (its rows stay NaN, its tokens are not counted).
        """
        def wanted(g: int, idxs) -> bool:
            return keep is None or any(keep(g, i) for i in idxs)

        results = [np.full((len(s), len(label_ids)), np.nan, dtype=np.float32) for s in suffix_groups]
        calls = tokens = 0
        for chunk in self._budget_chunks([len(p) for p in prefixes], extra=0):
            chunk = [g for g in chunk if wanted(g, range(len(suffix_groups[g])))]
            if not chunk:
                continue
            kv, lengths, computed = self._prefill([prefixes[g] for g in chunk], [stems[g] for g in chunk])
            calls += computed > 0  # all prefixes from the cache: no pass ran
            tokens += computed
            rows = [(slot, pack) for slot, g in enumerate(chunk)
                    for pack in self._packs([len(s) for s in suffix_groups[chunk[slot]]])]
            width = max(lengths)
            row_lens = [sum(len(suffix_groups[chunk[slot]][i]) for i in pack) for slot, pack in rows]
            for row_chunk in self._budget_chunks(row_lens, extra=width):
                batch = [rows[r] for r in row_chunk if wanted(chunk[rows[r][0]], rows[r][1])]
                if not batch:
                    continue
                packed = [[suffix_groups[chunk[slot]][i] for i in pack] for slot, pack in batch]
                logprobs = self._score_rows(kv, [slot for slot, _ in batch], [lengths[slot] for slot, _ in batch],
                                            width, packed, label_ids)
                for (slot, pack), lp in zip(batch, logprobs):
                    results[chunk[slot]][pack] = lp
                calls += 1
                tokens += sum(len(s) for row in packed for s in row)
        return results, tokens, calls

    def _prefill(self, prefixes: list[list[int]], stems: list[int]):
        """K/V of right-padded prefixes: per layer (keys, values), each (B, H, width, D).
        Padding sits after each prefix, so real positions are 0..n-1 and later masks hide it.
        A prefix found in the prefix cache is not run again; one whose stem (its first
        ``stems[i]`` tokens, the user's history) is found runs only the rest on top of it;
        the others run whole, as one batch. What is cached, unpadded: the stem where a
        prefix has one (the rest lists this request's candidates, which a user's next
        request rarely repeats: caching it too would halve the users the cache holds),
        else the whole prefix. Returns (K/V, lengths, tokens computed)."""
        keys = [self._cache_key(p) for p in prefixes]
        stem_keys = [self._cache_key(p[:s]) if s else None for p, s in zip(prefixes, stems)]
        found: list[LayerKV | None] = [None] * len(prefixes)
        on_stem: dict[int, LayerKV] = {}
        for i, (key, stem_key) in enumerate(zip(keys, stem_keys)):
            at, kv = self.prefix_cache.longest([key] if stem_key is None else [key, stem_key])
            if at == 0:
                found[i] = kv
            elif at == 1:
                on_stem[i] = kv
        whole = [i for i in range(len(prefixes)) if found[i] is None and i not in on_stem]
        if whole:
            batch = self._run_prefixes([prefixes[i] for i in whole])
            for row, i in enumerate(whole):
                # clone: a view would keep the whole padded batch alive inside the cache
                found[i] = [(k[row:row + 1, :, :len(prefixes[i])].clone(), v[row:row + 1, :, :len(prefixes[i])].clone())
                            for k, v in batch]
                if stem_keys[i] is not None:
                    self.prefix_cache.put(stem_keys[i], [(k[:, :, :stems[i]].clone(), v[:, :, :stems[i]].clone())
                                                         for k, v in found[i]])
        if on_stem:
            order = list(on_stem)
            rests = self._extend([on_stem[i] for i in order], [prefixes[i][stems[i]:] for i in order])
            for i, rest in zip(order, rests):
                found[i] = [(torch.cat([k, rk], dim=2), torch.cat([v, rv], dim=2))
                            for (k, v), (rk, rv) in zip(on_stem[i], rest)]
        for i in whole:
            if stem_keys[i] is None:
                self.prefix_cache.put(keys[i], found[i])
        kv = _stack_kv(found, max(len(p) for p in prefixes))
        computed = sum(len(prefixes[i]) for i in whole) + sum(len(prefixes[i]) - stems[i] for i in on_stem)
        return kv, [len(p) for p in prefixes], computed

    def _cache_key(self, ids: list[int]) -> str:
        return prefix_key(self.model_name, self.adapter_revision, ids)

    def _extend(self, stems: list[LayerKV], rests: list[list[int]]) -> list[LayerKV]:
        """Per prefix, the K/V of ``rests[i]`` run on top of the cached ``stems[i]``: one
        packed row per prefix (``ranker.engines.packed``), so each continues its own stem at
        the positions it would have had in one pass."""
        lengths = [s[0][0].shape[2] for s in stems]
        width = max(lengths)
        rows = pack_rows([[r] for r in rests], lengths, width, self._pad_id)
        new = extend_kv(self._decoder, _stack_kv(stems, width), rows, self.device)
        return [[(k[i:i + 1, :, :len(r)].clone(), v[i:i + 1, :, :len(r)].clone()) for k, v in new]
                for i, r in enumerate(rests)]

    def _run_prefixes(self, prefixes: list[list[int]]):
        ids, mask, _ = self._pad(prefixes, left=False)
        return prefix_kv(self._decoder, ids, mask)

    def _score_rows(self, kv, slots: list[int], prefix_lens: list[int], width: int,
                    packed: list[list[list[int]]], label_ids: torch.Tensor) -> list[np.ndarray]:
        """One forward over rows of packed suffixes (``ranker.engines.packed``), row r on
        top of prefix ``slots[r]``: every suffix is scored as if run by itself."""
        rows_in = pack_rows(packed, prefix_lens, width, self._pad_id)
        dev = self.device
        hidden = rows_hidden(self._decoder, kv, torch.tensor(slots, device=dev), rows_in, dev)  # (R, T, d)
        logits = self.vocab_logits(hidden[torch.tensor(rows_in.row_of, device=dev),
                                          torch.tensor(rows_in.last_of, device=dev)])
        rows = _gather(logits, label_ids)
        out, start = [], 0
        for suffixes in packed:
            out.append(rows[start:start + len(suffixes)])
            start += len(suffixes)
        return out

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(n, d) hidden states -> (n, V) float32 next-token logits (training computes its loss here too)."""
        # The vocabulary head runs in float32 whatever the body's dtype: it sees only one row
        # per prompt (cheap), and the log-softmax over 49k words is where bf16 rounding
        # would move label probabilities most.
        logits = torch.nn.functional.linear(hidden.float(), self._head_weight, self._head_bias)
        cap = getattr(self._net.config, "final_logit_softcapping", None)  # Gemma-style heads
        return torch.tanh(logits / cap) * cap if cap else logits

    def _packs(self, lengths: list[int]) -> list[list[int]]:
        return self.plan_packs(lengths, self.pack_tokens)

    def _budget_chunks(self, lengths: list[int], extra: int) -> list[list[int]]:
        """Indices grouped so that rows x (extra + longest row) stays within max_batch_tokens;
        similar lengths together (ascending), so little is padding."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        chunks: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            # order is ascending, so lengths[i] is the widest row of cur + [i]
            if cur and (len(cur) + 1) * (extra + lengths[i]) > self.max_batch_tokens:
                chunks.append(cur)
                cur = []
            cur.append(i)
        return chunks + [cur] if cur else chunks

    def _score_full(self, seqs: list[list[int]], label_ids: torch.Tensor, keep: Keep | None = None):
        rows = np.full((len(seqs), len(label_ids)), np.nan, dtype=np.float32)
        calls = tokens = 0
        for chunk in self._budget_chunks([len(s) for s in seqs], extra=0):
            if keep is not None:
                chunk = [i for i in chunk if keep(i)]
                if not chunk:
                    continue
            batch = [seqs[i] for i in chunk]
            ids, mask, pos = self._pad(batch, left=True)
            hidden = self._decoder(input_ids=ids, attention_mask=mask, position_ids=pos,
                                   use_cache=False).last_hidden_state  # (B, T, d)
            rows[chunk] = _gather(self.vocab_logits(hidden[:, -1]), label_ids)
            calls += 1
            tokens += sum(map(len, batch))
        return rows, tokens, calls

    def _pad(self, seqs: list[list[int]], left: bool):
        """(ids, attention mask, position ids), rows padded to the longest. Left padding puts
        every last token in the last column (full prompts, logits_to_keep=1); right padding
        keeps each row's real tokens at columns 0..n-1 (prefixes whose K/V rows extend).
        Position ids start at 0 on each row's first real token."""
        b, width = len(seqs), max(len(s) for s in seqs)
        ids = torch.full((b, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        pos = torch.zeros((b, width), dtype=torch.long)
        for r, s in enumerate(seqs):
            n = len(s)
            cols = slice(width - n, width) if left else slice(0, n)
            ids[r, cols] = torch.tensor(s)
            mask[r, cols] = 1
            pos[r, cols] = torch.arange(n)
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
        return {"model": self._model_record, "adapter": self.adapter_name,
                "adapter_revision": self.adapter_revision, "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "adapter_merged": self.adapter_merged,
                "bf16_units": self.bf16_units}

    def _attach_adapter(self, model, adapter: Adapter):
        from peft import PeftModel

        path = adapter.path
        try:
            model = PeftModel.from_pretrained(model, str(path))
        except Exception as e:  # noqa: BLE001 - peft raises many types for a mismatched adapter
            raise ModelError(f"cannot load adapter {path} onto {self.model_name}: {e}") from e
        self.adapter_name = adapter.name
        self.adapter_revision = adapter.revision
        log.info("adapter %s (revision %s) loaded", self.adapter_name, self.adapter_revision)
        return model


def _stack_kv(entries: Sequence[LayerKV], width: int) -> LayerKV:
    """Single-prefix K/V entries -> per layer (keys, values), each (B, H, width, D), right-padded."""
    return [(torch.cat([_pad_kv(e[layer][0], width) for e in entries]),
             torch.cat([_pad_kv(e[layer][1], width) for e in entries])) for layer in range(len(entries[0]))]


def _pad_kv(t: torch.Tensor, width: int) -> torch.Tensor:
    """(1, H, n, D) -> (1, H, width, D), zeros after the prefix (masked out later)."""
    n = t.shape[2]
    return t if n == width else torch.nn.functional.pad(t, (0, 0, 0, width - n))


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


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_units(flags: frozenset[str]) -> str | None:
    """The CPU's native bf16 matrix units (amx_bf16 or avx512_bf16), None without. Scores
    differ slightly between them (other kernels, other rounding), enough to move a
    validation verdict (docs/results.md), so choices record which one produced them."""
    return next((unit for unit in ("amx_bf16", "avx512_bf16") if unit in flags), None)


def auto_dtype(device_type: str, flags: frozenset[str]) -> torch.dtype:
    """bfloat16 on a GPU and on CPUs with native bf16 matrix units (AMX or AVX512-BF16:
    several times the fp32 matmul rate there), float32 on other CPUs, where bf16 is
    emulated and slower than fp32."""
    if device_type == "cuda" or bf16_units(flags):
        return torch.bfloat16
    return torch.float32


def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        chosen = auto_dtype(device.type, cpu_flags() if device.type == "cpu" else frozenset())
        log.info("dtype auto -> %s on %s", str(chosen).removeprefix("torch."), device.type)
        return chosen
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
