"""LLM ranking cost per request at the SERVICE's settings, and what it is made of.

The ranker is built exactly as the service builds it: ``stack.settings.Settings`` (the
RECRANKER_* environment, the service's defaults) and ``stack.build`` (adapter, engine with
its dtype and prefix cache, ranker config). For N distinct ML-100K users (history = the
user's events before the test like; candidates = the test item plus the most popular
unseen items, popularity = training likes, used as the backbone score; as many candidates
as RECRANKER_NUM_CANDIDATES), one request at a time, all three modes:

1. per request: p50/p95 latency, forward tokens and forward passes;
2. achieved FLOP/s of the LLM stage = 2 x parameters x forward tokens / LLM seconds, next
   to a large (2048^3) bf16 and fp32 matmul's FLOP/s measured in the same run;
3. the same users again with other candidates (prefix cache on: hit rate and latency;
   then the same requests with the cache off);
4. the old configuration vs the new, both measured here on the same users: old = float32,
   no prefix cache, history 400 tokens, pairwise 10, one 1,024-token pack (what this script measured before
   issue 14). The old prompt LAYOUT no longer exists in code, so this is a configuration
   comparison on the new layout; the old layout's recorded cost is printed beside it;
5. reference-style inference (21 free greedy generations, text parsed) on the first user,
   and its latency over ours for the same user;
6. with ``--compare-adapter FOLDER``: the same requests with another adapter, each served in
   its own prompt layout (e.g. inline vs catalogue), and the ratio of the two.

Writes bench/out/ranker.json. Set RECRANKER_DATA_DIR (and RECRANKER_HOME for the model
cache) as for the service; pin RECRANKER_DTYPE etc. to measure another configuration.

    python -m bench.bench_ranker --users 20                     # everything (the reference takes minutes)
    python -m bench.bench_ranker --users 20 --skip-reference --threads 2
    python -m bench.bench_ranker --users 2 --skip-old --ref-max-new-tokens 8   # smoke
    RECRANKER_ADAPTER=<catalogue adapter> python -m bench.bench_ranker --skip-reference \
        --compare-adapter models/recranker-smollm2-ml100k      # two layouts side by side
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from bench.report import machine, write_report
from candidate_gen.split import Split
from ranker.chat import to_scoring_prompt
from ranker.engines.hf import HFEngine
from ranker.ensemble import EnsembleWeights
from ranker.engines.prefix_cache import PrefixCache
from ranker.ranker import Ranker, RankRequest
from ranker.text import sanitize_title
from ranker.types import Candidate, UserProfile
from stack.build import build_ranker, load_split, resolve_adapter
from stack.profiles import candidates_from_items, profile_from_events
from stack.settings import Settings

log = logging.getLogger("bench.bench_ranker")

REF_HISTORY = 50
REF_SYSTEM = "You are a movie recommender system."
# what bench_ranker measured before issue 14 (and docs/results.md's issue 3 table)
OLD_CONFIG = {"dtype": "float32", "prefix_cache_mb": 0, "history_token_budget": 400, "pairwise_budget": 10}
OLD_PACK_TOKENS = 1024  # the engine's pack size before 256-token packs (one pack per request)
# the old prompt layout's cost, recorded before the token diet (it is no longer in code):
# issue 14, the README's /v1/rank request at the service's settings (history 200, pairwise 5), fp32
OLD_LAYOUT_RECORDED = {"forward_tokens": 2827, "passes": 6, "source": "issue 14, README /v1/rank request, "
                       "service settings (history 200, pairwise 5), fp32, measured on main before the token diet"}


def build_requests(split: Split, user_ids: list[str], n_candidates: int, offset: int = 0) -> list[RankRequest]:
    """One request per user with a test like: the test item + the most popular unseen items,
    skipping the first ``offset`` of those (offset > 0: the same user with other candidates)."""
    ds = split.dataset
    _, train_items = split.train_interactions()
    popularity = Counter(train_items.tolist())
    by_popularity = [i for i, _ in popularity.most_common()]
    out = []
    for user_id in user_ids:
        us = split.users[ds.user_index[user_id]]
        test_item = us.held_out("test")
        if test_item is None:
            continue
        seen = us.seen("test") | {test_item}
        items = [test_item] + [i for i in by_popularity if i not in seen][offset: offset + n_candidates - 1]
        cands = candidates_from_items(ds, items, [float(popularity.get(i, 0)) for i in items])
        # explicit weights: every mode is scored even where the shipped weights serve the
        # backbone alone (no LLM) — this benchmark measures the LLM stage at all three modes
        out.append(RankRequest(profile_from_events(ds, user_id, us.context("test")), cands, weights=EnsembleWeights()))
    return out


def test_user_ids(split: Split) -> list[str]:
    """Users with a held-out test like, in dataset order (the users every bench draws from)."""
    return [u for u in split.dataset.user_ids if split.users[split.dataset.user_index[u]].held_out("test") is not None]


def scoring_prompts(ranker: Ranker, engine, requests: list[RankRequest]) -> tuple[list[list], list[list[str]]]:
    """Per request: the engine's scoring prompts of every planned mode, and each prompt's mode."""
    plans = [ranker.plans(r) for r in requests]
    prompts = [[to_scoring_prompt(engine, p) for plan in ps.values() for p in plan.prompts] for ps in plans]
    modes = [[mode for mode, plan in ps.items() for _ in plan.prompts] for ps in plans]
    return prompts, modes


def quantile(values: list[float], q: float) -> float:
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def parameters(engine: HFEngine) -> tuple[int, int]:
    """(all parameters, parameters outside the token embedding): a token's forward costs
    about 2 FLOPs per weight it multiplies; the embedding is a lookup, not a matmul."""
    net = engine._net
    total = sum(p.numel() for p in net.parameters())
    emb = net.get_input_embeddings().weight.numel()
    return total, total - emb


def run_users(ranker: Ranker, requests: list[RankRequest]) -> dict:
    """Each request alone, in order; per-request figures and their summary."""
    rows = []
    for req in requests:
        t = time.perf_counter()
        res = ranker.rank(req)
        seconds = time.perf_counter() - t
        if res.degraded:
            raise SystemExit(f"ranker degraded for user {req.user.user_id}: {res.degraded_reason}")
        rows.append({"user": req.user.user_id, "latency_s": seconds, "llm_s": res.timings["llm"],
                     "forward_tokens": res.forward_tokens, "passes": res.llm_calls,
                     "top5": [i.item_id for i in res.items]})
    lat = [r["latency_s"] for r in rows]
    return {
        "users": len(rows),
        "p50_s": quantile(lat, 0.5), "p95_s": quantile(lat, 0.95), "mean_s": statistics.fmean(lat),
        "forward_tokens_per_request": statistics.fmean(r["forward_tokens"] for r in rows),
        "passes_per_request": statistics.fmean(r["passes"] for r in rows),
        "llm_s_total": sum(r["llm_s"] for r in rows), "forward_tokens_total": sum(r["forward_tokens"] for r in rows),
        "per_request": rows,
    }


def matmul_flops(dtype: torch.dtype, n: int, repeats: int = 5, kernel=torch.mm) -> float:
    """FLOP/s of an n x n by n x n ``kernel`` (2 n^3 operations), median of ``repeats`` after a
    warm-up. Integer dtypes get random int8-range values (``torch._int_mm`` is the int8 kernel)."""
    if dtype.is_floating_point:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    else:
        a, b = (torch.randint(-127, 127, (n, n), dtype=dtype) for _ in range(2))
    kernel(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        kernel(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


# ---- reference-style: free generation and text parsing ----------------------------------------


def ref_history(user: UserProfile) -> str:
    recent = list(reversed(user.history))[:REF_HISTORY]
    return "\n".join(f"{sanitize_title(e.title)} (rating: {e.rating:g})" for e in recent)


def ref_prompts(user: UserProfile, cands: list[Candidate]) -> list[tuple[str, str, tuple]]:
    """(kind, user message, key) for the 21 generations the reference makes per user."""
    hist = ref_history(user)
    head = f"The user has watched and rated these movies (most recent first):\n{hist}\n\n"
    out = []
    for c in cands:
        out.append(("pointwise", head + f"How would the user rate the movie {c.title}, from 1 to 5?", (c.item_id,)))
    for a, b in zip(cands[0::2], cands[1::2]):  # 5 disjoint pairs, both orders
        for x, y in ((a, b), (b, a)):
            q = f"Would the user prefer {x.title} over {y.title}? Answer Yes or No."
            out.append(("pairwise", head + q, (x.item_id, y.item_id)))
    listing = "\n".join(c.title for c in cands)
    out.append(("listwise", head + f"Candidates:\n{listing}\nRank the top 5 candidates for the user.", ()))
    return out


def parse(kind: str, text: str, cands: list[Candidate]):
    if kind == "pointwise":
        m = re.search(r"\b([1-5])\b", text)
        return (int(m.group(1)), True) if m else (3, False)  # the reference's silent default
    if kind == "pairwise":
        m = re.search(r"\b(yes|no)\b", text, flags=re.I)
        return (m.group(1).lower() == "yes", True) if m else (None, False)
    found = sorted((text.find(c.title), c.item_id) for c in cands if c.title in text)  # substring match
    return [i for _, i in found][:5], bool(found)


def run_reference(engine: HFEngine, request: RankRequest, max_new_tokens: int) -> dict:
    cands = request.candidates
    gens = []
    t0 = time.perf_counter()
    for kind, message, key in ref_prompts(request.user, cands):
        text = engine.chat_template(REF_SYSTEM, message)
        t = time.perf_counter()
        answer = engine.generate(text, max_new_tokens=max_new_tokens)
        value, ok = parse(kind, answer, cands)
        gens.append({
            "kind": kind, "key": key, "prompt_tokens": engine.count_tokens(text),
            "new_tokens": engine.count_tokens(answer) if answer else 0,
            "seconds": time.perf_counter() - t, "parsed": ok, "value": value, "answer_head": answer[:80],
        })
        g = gens[-1]
        log.info("%s %s: %d+%d tokens in %.1fs", kind, key, g["prompt_tokens"], g["new_tokens"], g["seconds"])
    seconds = time.perf_counter() - t0
    # reference-like hybrid: rating + 0.5 per pairwise win + listwise position tie-breaker
    score = {c.item_id: 0.0 for c in cands}
    for g in gens:
        if g["kind"] == "pointwise":
            score[g["key"][0]] += g["value"]
        elif g["kind"] == "pairwise" and g["value"] is not None:
            score[g["key"][0] if g["value"] else g["key"][1]] += 0.5
        elif g["kind"] == "listwise":
            for pos, item in enumerate(g["value"]):
                score[item] += 0.1 * (5 - pos) / 5
    top5 = sorted(score, key=lambda i: -score[i])[:5]
    prompt_tokens = sum(g["prompt_tokens"] for g in gens)
    new_tokens = sum(g["new_tokens"] for g in gens)
    return {
        "latency_s": seconds,
        "generations": len(gens),
        "llm_calls": sum(1 + max(0, g["new_tokens"] - 1) for g in gens),  # prefill + one pass per further token
        "forward_tokens": prompt_tokens + new_tokens,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "max_new_tokens": max_new_tokens,
        "parse_failures": sum(not g["parsed"] for g in gens),
        "top5": top5,
        "generations_detail": gens,
    }


def line(name: str, r: dict) -> None:
    print(f"{name:<34} p50 {r['p50_s']:6.2f} s  p95 {r['p95_s']:6.2f} s  "
          f"{r['forward_tokens_per_request']:7.0f} forward tokens  {r['passes_per_request']:4.1f} passes per request",
          flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20, help="distinct ML-100K users (ids 1, 2, ... with a test like)")
    ap.add_argument("--skip-repeat", action="store_true", help="skip the repeated-users (prefix cache) pass")
    ap.add_argument("--skip-old", action="store_true", help="skip the old configuration")
    ap.add_argument("--skip-reference", action="store_true", help="skip reference-style generation (minutes)")
    ap.add_argument("--ref-max-new-tokens", type=int, default=300)
    ap.add_argument("--compare-adapter", metavar="FOLDER",
                    help="also run the same requests with this adapter (served in its own prompt layout) and "
                         "print its latency and tokens over this one's")
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/ranker.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.users < 1:
        ap.error("--users must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = Settings()
    split = load_split(settings)
    ids = test_user_ids(split)
    if len(ids) < args.users + 1:
        raise SystemExit(f"only {len(ids)} users with a test like")
    users, warm_user = ids[: args.users], ids[-1]
    n = settings.num_candidates
    adapter = resolve_adapter(settings)
    ranker = build_ranker(settings, adapter)
    engine = ranker.engine
    if not isinstance(engine, HFEngine):
        raise SystemExit("bench_ranker measures the in-process engine: set RECRANKER_ENGINE=hf")
    config = {"dtype": str(engine.dtype).removeprefix("torch."), "prefix_cache_mb": settings.prefix_cache_mb,
              "history_token_budget": ranker.config.history_token_budget,
              "pairwise_budget": ranker.config.pairwise_budget, "listwise_shuffles": ranker.config.listwise_shuffles,
              "num_candidates": n, "adapter": engine.adapter_name, "model": engine.model_name,
              "prompt_layout": ranker.config.prompt_layout, "item_genres": ranker.config.item_genres}
    print("service settings: " + ", ".join(f"{k}={v}" for k, v in config.items()), flush=True)
    load = os.getloadavg()
    ranker.rank(build_requests(split, [warm_user], n)[0])  # warm-up: first-call allocations
    requests = build_requests(split, users, n)
    new = run_users(ranker, requests)
    line("new (service settings)", new)

    params, body_params = parameters(engine)
    achieved = 2 * params * new["forward_tokens_total"] / new["llm_s_total"]
    achieved_body = 2 * body_params * new["forward_tokens_total"] / new["llm_s_total"]
    peak = {"bf16": matmul_flops(torch.bfloat16, args.matmul_n), "fp32": matmul_flops(torch.float32, args.matmul_n)}
    flops = {"parameters": params, "parameters_without_embedding": body_params,
             "achieved_flops": achieved, "achieved_flops_without_embedding": achieved_body,
             "matmul_n": args.matmul_n, "matmul_bf16_flops": peak["bf16"], "matmul_fp32_flops": peak["fp32"],
             "achieved_over_bf16_matmul": achieved / peak["bf16"], "achieved_over_fp32_matmul": achieved / peak["fp32"]}
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s (2 x {params / 1e6:.0f}M parameters x forward tokens / LLM s; "
          f"{achieved_body / 1e9:.1f} without the embedding) vs {args.matmul_n}^3 matmul: "
          f"bf16 {peak['bf16'] / 1e9:.1f}, fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s -> "
          f"{100 * achieved / peak['bf16']:.0f}% of bf16, {100 * achieved / peak['fp32']:.0f}% of fp32", flush=True)
    report = {"machine": machine(torch_threads=torch.get_num_threads(), loadavg_at_start=load),
              "config": config, "new": new, "flops": flops}

    if not args.skip_repeat:
        again = build_requests(split, users, n, offset=n)  # the same users, other candidates
        stats = engine.prefix_cache.stats
        before = (stats.hits, stats.partial_hits, stats.lookups)
        cached = run_users(ranker, again)
        hits, partial = stats.hits - before[0], stats.partial_hits - before[1]
        lookups = stats.lookups - before[2]
        cache, engine.prefix_cache = engine.prefix_cache, PrefixCache(0)
        try:
            uncached = run_users(ranker, again)
        finally:
            engine.prefix_cache = cache
        rate = hits / lookups if lookups else 0.0
        stem_rate = partial / lookups if lookups else 0.0
        report["repeat"] = {"prefix_cache_mb": settings.prefix_cache_mb, "hit_rate": rate,
                            "stem_hit_rate": stem_rate, "cache_on": cached, "cache_off": uncached}
        line(f"repeat users, cache on (whole prefix {100 * rate:.0f}%, history stem only {100 * stem_rate:.0f}%)",
             cached)
        line("repeat users, cache off", uncached)

    if not args.skip_old:
        old_settings = settings.model_copy(update=OLD_CONFIG)
        old_ranker = build_ranker(old_settings, adapter)
        old_ranker.engine.pack_tokens = OLD_PACK_TOKENS
        old_ranker.rank(build_requests(split, [warm_user], n)[0])
        old = run_users(old_ranker, requests)
        line("old configuration", old)
        ratio = {"p50": old["p50_s"] / new["p50_s"], "p95": old["p95_s"] / new["p95_s"],
                 "forward_tokens": old["forward_tokens_per_request"] / new["forward_tokens_per_request"]}
        layout_ratio = OLD_LAYOUT_RECORDED["forward_tokens"] / new["forward_tokens_per_request"]
        report["old"] = {"config": {**OLD_CONFIG, "pack_tokens": OLD_PACK_TOKENS}, **old, "ratio_old_over_new": ratio,
                         "old_layout_recorded": OLD_LAYOUT_RECORDED,
                         "old_layout_tokens_over_new": layout_ratio,
                         "note": "configuration comparison on the NEW prompt layout; the old layout is no longer "
                                 "in code, its recorded token count is given for reference"}
        print(f"old / new configuration: p50 {ratio['p50']:.2f}x, p95 {ratio['p95']:.2f}x, "
              f"forward tokens {ratio['forward_tokens']:.2f}x  (old = {OLD_CONFIG}, on the new prompt layout)")
        print(f"old prompt layout (not in code any more; recorded: {OLD_LAYOUT_RECORDED['forward_tokens']:,} "
              f"forward tokens in {OLD_LAYOUT_RECORDED['passes']} passes per request at service settings) / new: "
              f"{layout_ratio:.2f}x forward tokens", flush=True)
        del old_ranker

    if args.compare_adapter:
        other = resolve_adapter(settings, args.compare_adapter)
        other_ranker = build_ranker(settings, other)
        other_ranker.rank(build_requests(split, [warm_user], n)[0])
        them = run_users(other_ranker, requests)  # the same users and candidates, right after ours
        line(f"adapter {other.name} ({other.prompt_layout})", them)
        ratio = {"p50": them["p50_s"] / new["p50_s"], "p95": them["p95_s"] / new["p95_s"],
                 "forward_tokens": them["forward_tokens_per_request"] / new["forward_tokens_per_request"]}
        report["compare_adapter"] = {"adapter": other.name, "prompt_layout": other.prompt_layout,
                                     "item_genres": other.item_genres, **them, "ratio_other_over_this": ratio}
        print(f"adapter {other.name} / {engine.adapter_name}: p50 {ratio['p50']:.2f}x, p95 {ratio['p95']:.2f}x, "
              f"forward tokens {ratio['forward_tokens']:.2f}x", flush=True)
        del other_ranker

    if not args.skip_reference:
        first = requests[0]
        ours_s = new["per_request"][0]["latency_s"]
        ref = run_reference(engine, first, args.ref_max_new_tokens)
        ref_ratio = {"latency": ref["latency_s"] / ours_s,
                     "forward_tokens": ref["forward_tokens"] / new["per_request"][0]["forward_tokens"]}
        report["reference_style"] = {"user": first.user.user_id, **ref}
        report["ratio_reference_over_ours"] = ref_ratio
        print(f"reference-style (user {first.user.user_id}): {ref['latency_s']:.2f} s, {ref['forward_tokens']} forward "
              f"tokens, {ref['llm_calls']} passes, {ref['parse_failures']} of {ref['generations']} answers unparsed; "
              f"ours for that user {ours_s:.2f} s -> reference / ours: latency {ref_ratio['latency']:.1f}x, "
              f"forward tokens {ref_ratio['forward_tokens']:.1f}x")
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    print(f"machine: {report['machine']['cpu']}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load {load[0]:.1f} at start")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
