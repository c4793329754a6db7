"""The offline pipeline steps the command line runs, as plain functions.

Each takes the settings plus the command's own choices and returns what the CLI prints or
writes, so ``recranker.cli`` only parses arguments and prints. Loading goes through the
composition root (``stack.build``), the same loader the service uses.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stack.build import Stack, build_stack, load_backbone, load_split, resolve_adapter
from stack.settings import Settings, ranker_config
from training.data_io import RECIPE_KEY, as_json, check_rebuild, dataset_folder_name

log = logging.getLogger(__name__)

CHOICE_WORDS = {"adapter_revision": "adapter revision", "backbone_model": "backbone",  # evidence field -> words
                "pairwise_budget": "pairwise budget", "listwise_shuffles": "listwise orders",
                "history_token_budget": "history tokens"}

if TYPE_CHECKING:
    from candidate_gen.split import Split


class PipelineError(ValueError):
    """A pipeline step cannot run with these choices; the message says why."""


@dataclass(frozen=True)
class DataChoice:
    """Which dataset a command reads: a name, a folder, or None for settings.dataset."""

    dataset: str | None = None
    dataset_path: str | None = None

    def split(self, settings: Settings) -> Split:
        return load_split(settings, self.dataset, self.dataset_path)


# ---- backbones -----------------------------------------------------------------------------


def train_backbone_artifact(settings: Settings, data: DataChoice, model: str, seed: int) -> tuple[Path, dict, dict]:
    """Train ``model``, evaluate it on test users, choose its recency re-ordering on validation
    users, save it under the home; (folder, test result, recency choice)."""
    from candidate_gen.artifacts import backbone_dir, recency_choice, save_backbone
    from candidate_gen.evaluate import evaluate_backbone
    from candidate_gen.train import train_backbone

    split = data.split(settings)
    backbone, metrics = train_backbone(split, model, seed=seed)
    folder = backbone_dir(settings.home, split.dataset.name, model)
    test = evaluate_backbone(backbone, split, stage="test")
    recency = recency_choice(backbone, split)
    save_backbone(backbone, folder, {**metrics, "test": test, "dataset": split.dataset.name,
                                     "fingerprint": split.dataset.fingerprint, "seed": seed, "recency": recency},
                  item_ids=split.dataset.item_ids, user_ids=split.dataset.user_ids)
    return folder, test, recency


def evaluate_backbone_artifact(settings: Settings, data: DataChoice, model: str, seed: int) -> dict:
    """HR/NDCG of the saved backbone (trained when absent) on every test user."""
    from candidate_gen.evaluate import evaluate_backbone

    split = data.split(settings)
    loaded = load_backbone(settings, split, model, seed)
    result = evaluate_backbone(loaded.backbone, split, stage="test")
    return {"dataset": split.dataset.name, "model": model, "users": result["users"], "metrics": result["metrics"]}


# ---- LLM evaluation and hybrid weights ---------------------------------------------------


def _eval_stack(settings: Settings, data: DataChoice, backbone: str, seed: int, adapter: str | None,
                num_candidates: int) -> Stack:
    """The stack for an evaluation; ``adapter`` None = settings.adapter, 'none' = base model.
    Refuses more candidates than the adapter's prompt layout can show (before any scoring)."""
    from ranker.prompts import candidate_limit

    kwargs = {} if adapter is None else {"adapter": adapter}
    resolved = resolve_adapter(settings, **kwargs)  # reads the adapter's layout; no model is loaded yet
    limit = candidate_limit(resolved.prompt_layout) if resolved is not None else None
    if limit is not None and num_candidates > limit:
        raise PipelineError(f"--candidates {num_candidates}: this adapter's catalogue prompt layout ranks at most "
                            f"{limit} candidates per request")
    return build_stack(settings, dataset=data.dataset, dataset_path=data.dataset_path, backbone=backbone,
                       seed=seed, **kwargs)


def _outcomes(settings: Settings, built: Stack, config):
    from training.evaluate import cache_key, collect

    key = cache_key(config, built.ranker, built.backbone.meta, built.generator.info)
    cache = settings.home / "eval-cache" / f"{key}.jsonl"
    return collect(built.split, built.generator, built.ranker, config, cache_path=cache)


@dataclass
class EvaluationRun:
    result: dict  # the JSON written by `recranker evaluate`
    tables: list[str]  # markdown tables, two per hint setting
    charts: list[tuple[dict, str, str]]  # (rows, suffix, title) per hint setting, for bar charts


def evaluate_llm(settings: Settings, data: DataChoice, *, backbone: str, adapter: str | None, users: int | None,
                 seed: int, num_candidates: int, stage: str, hints: str) -> EvaluationRun:
    """The paper's protocol for each hint setting ('on', 'off', 'both'): backbone vs each
    mode vs hybrid, HR/NDCG@3,5, over all users and the subset whose target is a candidate."""
    from ranker.ensemble import HintWeightsMissing
    from training.evaluate import EvalConfig, report
    from training.report import PAIRED_RESAMPLES, markdown_paired_table, markdown_table

    EvalConfig(stage=stage, num_candidates=num_candidates, users=users, seed=seed)  # bad numbers: before the model loads
    built = _eval_stack(settings, data, backbone, seed, adapter, num_candidates)
    ranker, name = built.ranker, built.dataset.name
    adapter_path = str(built.adapter.path) if built.adapter else None
    source = built.generator.source  # the backbone, plus recency where it re-orders the candidates
    out: dict = {"dataset": name, "backbone": backbone, "candidate_source": source,
                 "candidate_order": built.generator.info, "adapter": adapter_path, "model": ranker.engine.model_name,
                 "ranker": asdict(ranker.config), "weights": ranker.weights.to_dict(),
                 "weight_set": ranker.weight_set.to_dict(), "weights_withheld": ranker.weight_set.withheld,
                 "stage": stage, "num_candidates": num_candidates, "seed": seed,
                 "bootstrap_resamples": {"rows": 1000, "paired": PAIRED_RESAMPLES}}
    hint_settings = {"on": [True], "off": [False], "both": [True, False]}[hints]
    tables, charts = [], []
    for use_hints in hint_settings:
        config = EvalConfig(stage=stage, num_candidates=num_candidates, use_hints=use_hints, users=users, seed=seed)
        try:
            weights, weights_for = ranker.weight_set.for_hints(use_hints), ("on" if use_hints else "off")
        except HintWeightsMissing:  # the service refuses this combination; the report says what it used
            weights, weights_for = ranker.weights, "on (none chosen for hints off; the service refuses hints off)"
        result = report(_outcomes(settings, built, config), weights, seed=seed)
        result["weights_chosen_for_hints"] = weights_for
        key = "with_hints" if use_hints else "without_hints"
        out[key] = result
        title = (f"{name}, {source} candidates ({num_candidates}), adapter={adapter_path or 'none'}, "
                 f"hints={'on' if use_hints else 'off'}, {stage} users: {result['users']}; candidate ceiling "
                 f"{result['candidate_ceiling']:.3f} ({result['users_with_target_in_candidates']} users)")
        tables.append(markdown_table(result["rows"], title))
        tables.append(markdown_paired_table(
            result["paired"], f"paired differences vs the backbone, same {result['users']} users, mean "
                              f"[95% bootstrap CI, {PAIRED_RESAMPLES} resamples] (relative); hybrid weights "
                              f"{weights.to_dict()} chosen for hints {weights_for}"))
        tables.append(markdown_table(result["rows_target_in_candidates"],
                                     f"subset whose held-out item is a candidate ({result['users_with_target_in_candidates']} users)"))
        charts.append((result["rows"], key, title))
    first = out["with_hints" if hint_settings[0] else "without_hints"]
    out["users"] = first["users"]
    out["rows"] = first["rows"]
    out["paired"] = first["paired"]
    out["candidate_ceiling"] = first["candidate_ceiling"]
    return EvaluationRun(out, tables, charts)


def evaluate_new_items(settings: Settings, data: DataChoice, *, adapter: str | None, share: float, seed: int,
                       num_candidates: int, stage: str, users: int | None,
                       outcomes_path: Path | None = None) -> EvaluationRun:
    """The LLM on items no backbone has a score for (``training.new_items``): each mode vs a
    score-free (seeded random) order, paired, on the users whose held-out like is new.
    ``outcomes_path``: also write each user's outcome there (JSON lines, the evaluation
    cache's format), so two adapters can be compared per user (bench/compare_runs.py)."""
    from training.evaluate import report, seeded_subset
    from training.new_items import MODES_ONLY, hold_out_items, new_item_cases, rank_cases
    from training.report import PAIRED_RESAMPLES, markdown_paired_table, markdown_table

    if num_candidates < 2 or (users is not None and users < 1):  # before the model loads
        raise PipelineError(f"new items need --candidates >= 2 and --users >= 1, got {num_candidates} and {users}")
    built = _eval_stack(settings, data, "pop", seed, adapter, num_candidates)  # the backbone is not used: new items have no score
    new_items = hold_out_items(built.split.dataset.n_items, share, seed)
    cases = new_item_cases(built.split, new_items, stage, num_candidates, seed)
    cases = [cases[k] for k in seeded_subset(range(len(cases)), users, seed)]
    if not cases:
        raise PipelineError(f"no {stage} user has a new held-out like and {num_candidates - 1} unrated new items "
                            f"({len(new_items)} new items): raise --share or lower --candidates")
    outcomes = rank_cases(built.split, built.ranker, cases)
    if outcomes_path is not None:
        from training.data_io import write_jsonl_atomic

        write_jsonl_atomic(outcomes_path, [asdict(o) for o in outcomes])
    result = report(outcomes, MODES_ONLY, seed=seed)
    adapter_path = str(built.adapter.path) if built.adapter else None
    out = {"dataset": built.dataset.name, "adapter": adapter_path, "model": built.ranker.engine.model_name,
           "stage": stage, "share": share, "new_items": len(new_items), "num_candidates": num_candidates,
           "seed": seed, "hints": "off", "backbone_row": "seeded random order (no scores for new items)", **result}
    title = (f"{built.dataset.name}, {len(new_items)} new items ({share:.0%}), {num_candidates} new candidates, "
             f"adapter={adapter_path or 'none'}, hints off, {stage} users whose held-out like is new: {result['users']}")
    tables = [markdown_table(result["rows"], title + " ('backbone' = random order)"),
              markdown_paired_table(result["paired"], f"paired differences vs the random order, same {result['users']} "
                                                      f"users, mean [95% bootstrap CI, {PAIRED_RESAMPLES} resamples]")]
    return EvaluationRun(out, tables, [(result["rows"], "new-items", title)])


def choose_hybrid_weights(settings: Settings, data: DataChoice, *, backbone: str, adapter: str | None,
                          users: int | None, seed: int, num_candidates: int, hints: str = "both",
                          fusion: str = "grid", test_gap: bool = False, objective: str | None = None) -> dict:
    """Choose the hybrid weights on validation users, per hint setting ('on', 'off', 'both'),
    with the paired rule of ``training.weights.select_weights``; write them beside the adapter.
    The setting not run keeps the weights already chosen for it. Returns a summary for the CLI.

    ``fusion='logistic'`` also fits the learned fusion (training.fusion) on the same
    validation outcomes and records it (not served). ``test_gap`` scores the chosen grid
    weights (and the fusion) on test users too, after every choice is made: the
    validation-to-test gap; it reuses `recranker evaluate`'s cached test outcomes.
    ``objective``: what the grid point is chosen by (default and verdict: NDCG@3)."""
    from ranker.ensemble import NUMERICS_FIELDS
    from training.evaluate import EvalConfig
    from training.weights import (VERDICT_METRIC, Selection, metric_cutoff, save_weights, select_weights,
                                  weight_set_from)

    objective = objective or VERDICT_METRIC

    try:
        metric_cutoff(objective)  # before minutes of LLM scoring
    except ValueError as e:
        raise PipelineError(f"--objective: {e}") from None
    EvalConfig(stage="valid", num_candidates=num_candidates, users=users, seed=seed)  # before the model loads
    built = _eval_stack(settings, data, backbone, seed, adapter, num_candidates)
    if built.adapter is None:
        raise PipelineError("choosing weights needs an adapter folder to write hybrid_weights.json into (--adapter)")
    settings_to_run = {"on": [True], "off": [False], "both": [True, False]}[hints]
    if True not in settings_to_run:  # refuse before minutes of LLM scoring, not after
        from ranker.ensemble import load_weight_set

        problem = _kept_choice_problem(load_weight_set(built.adapter.path), "hints_on",
                                       _choice_context(built.adapter, built.generator.source,
                                                       built.ranker.config))
        if problem:
            raise PipelineError(f"{built.adapter.path}: its hints-on weights {problem}; run with --hints on or both "
                                "(or choose in a copy of the folder)")
    selections: dict[bool, Selection] = {}
    details: dict = {"stage": "valid", "backbone": backbone, "num_candidates": num_candidates, "seed": seed,
                     "users_requested": users, "metric": VERDICT_METRIC, "objective": objective}
    for use_hints in settings_to_run:
        config = EvalConfig(stage="valid", num_candidates=num_candidates, use_hints=use_hints, users=users, seed=seed)
        valid = _outcomes(settings, built, config)
        sel = select_weights(valid, seed=seed, objective=objective)
        # what these weights were chosen for: this adapter revision's scores over this backbone's candidates,
        # under these scoring settings, computed with these numerics (the same users scored on another CPU
        # moved a verdict)
        info = getattr(built.engine, "info", {})
        sel.evidence.update(adapter_revision=built.adapter.revision, backbone_model=built.generator.source,
                            **_scoring_config(built.ranker.config),
                            scored_on={k: info.get(k) for k in NUMERICS_FIELDS})
        selections[use_hints] = sel
        key = "hints_on" if use_hints else "hints_off"
        details[key] = {**sel.evidence, "served": sel.weights.to_dict(), "llm_helps": sel.llm_helps,
                        "top": sel.table[:10]}
        test = None
        if test_gap:  # after the choice: test users only measure it
            test = _outcomes(settings, built, EvalConfig(stage="test", num_candidates=num_candidates,
                                                         use_hints=use_hints, users=users, seed=seed))
            details[key]["test_gap"] = _grid_test_gap(sel, test, seed)
        if fusion == "logistic":
            from training.fusion import learn_fusion

            details[key]["fusion"] = learn_fusion(valid, test, seed=seed).to_dict()
    _keep_earlier_choice(built.adapter, built.generator.source, built.ranker.config, selections, details)
    weight_set = weight_set_from(selections)
    path = save_weights(weight_set, built.adapter.path, details)
    return {"path": str(path), "weights": weight_set.to_dict(), "describe": weight_set.describe(),
            "users": {("hints_on" if h else "hints_off"): s.evidence.get("users") for h, s in selections.items()},
            "details": details}


def _scoring_config(config) -> dict:
    """The ranker settings a weight choice records and is served under only (``SCORING_CONFIG_FIELDS``)."""
    from ranker.ensemble import SCORING_CONFIG_FIELDS

    return {f: getattr(config, f) for f in SCORING_CONFIG_FIELDS}


def _choice_context(adapter, backbone: str, ranker_config) -> dict:
    """What a weight choice is tied to: adapter revision, backbone and scoring settings."""
    return {"adapter_revision": adapter.revision, "backbone_model": backbone, **_scoring_config(ranker_config)}


def _kept_choice_problem(existing, key: str, now: dict) -> str | None:
    """Why the weights already in ``existing`` (the adapter's weight set) for ``key``
    ('hints_on' / 'hints_off') cannot be kept under ``now`` (``_choice_context``): never
    chosen, or chosen for another adapter revision, backbone or scoring settings; None
    when they can."""
    stale = existing.chosen_elsewhere(key, **now)
    if stale:
        return "were chosen for " + " and ".join(f"{CHOICE_WORDS[f]} {was}, not {now[f]}"
                                                 for f, was in stale.items())
    kept = existing.hints_on if key == "hints_on" else existing.hints_off
    return "were never chosen" if not existing.chosen or kept is None else None


def _keep_earlier_choice(adapter, backbone: str, ranker_config, selections: dict, details: dict) -> None:
    """The hint setting not run this time keeps the choice already in the file, and its
    record (``--hints on`` must not drop chosen hints-off weights, nor ``--hints off`` the
    hints-on ones), unless that choice was made for another adapter revision, backbone or
    scoring settings."""
    from ranker.ensemble import load_weight_set
    from training.weights import Selection, load_selection

    existing = load_weight_set(adapter.path)
    earlier_records = load_selection(adapter.path)
    now = _choice_context(adapter, backbone, ranker_config)
    for use_hints in (True, False):
        if use_hints in selections:
            continue
        key = "hints_on" if use_hints else "hints_off"
        kept = existing.hints_on if use_hints else existing.hints_off
        why = _kept_choice_problem(existing, key, now)
        if why:
            if use_hints:
                raise PipelineError(f"{adapter.path}: its hints-on weights {why}; run with --hints on or both "
                                    "(or choose in a copy of the folder)")
            if existing.chosen_elsewhere(key, **now):
                log.warning("%s: hints-off weights %s: dropped (the service refuses hints off until "
                            "`recranker weights --hints off`)", adapter.path, why)
            continue
        evidence = existing.evidence.get(key, {"note": "kept from an earlier selection"})
        selections[use_hints] = Selection(kept, existing.llm_helps.get(key, True), evidence)
        if key in earlier_records:
            details[key] = earlier_records[key]


def _grid_test_gap(sel, test, seed: int) -> dict:
    """The grid's best LLM weights on test users: paired difference and the gap to validation."""
    from ranker.ensemble import EnsembleWeights
    from common.stats import PAIRED_RESAMPLES, bootstrap_ci
    from training.weights import paired_diffs

    ev = sel.evidence
    d = paired_diffs(test, EnsembleWeights(**ev["best_llm_weights"]), ev["metric"])
    lo, hi = bootstrap_ci(d, n_boot=PAIRED_RESAMPLES, seed=seed)
    return {"weights": ev["best_llm_weights"], "users": len(d), "diff": float(d.mean()), "ci": [lo, hi],
            "gap_in_sample": ev["diff"] - float(d.mean()),
            "gap_cross_validated": ev["cross_validated"]["diff"] - float(d.mean())}


# ---- instruction data --------------------------------------------------------------------


def build_instruction_dataset(settings: Settings, data: DataChoice, *, backbone: str, sampling: str, budget: int,
                              hints: bool, seed: int, out: str | None) -> tuple[Path, int, dict, int]:
    """Sample users, build the three-task instruction dataset, write it.
    Returns (folder, examples, per-task counts, unique users)."""
    from transformers import AutoTokenizer

    from ranker.engines.tokens import encode_text
    from ranker.model import prepare_model
    from training.instructions import InstructionConfig, build_instructions, dataset_manifest, write_dataset
    from training.sampling import SamplingConfig, sample_users, save_sampled

    split = data.split(settings)
    config = InstructionConfig(hints=hints, prompt=ranker_config(settings).prompt_config)
    recipe = {"kind": "instructions", "dataset": split.dataset.name, "data_fingerprint": split.dataset.fingerprint,
              "backbone": backbone, "sampling": sampling, "budget": budget, "seed": seed,
              "base_model": settings.base_model, "config": asdict(config)}
    options = [name for name, on in (("no-hints", not hints), (f"seed{seed}", seed != 0)) if on]
    folder = Path(out or settings.home / "instructions" /
                  dataset_folder_name(split.dataset.name, backbone, sampling, budget, options))
    check_rebuild(folder, recipe)  # before any work: a clash costs nothing
    loaded = load_backbone(settings, split, backbone, seed)
    sampled = sample_users(split, SamplingConfig(method=sampling, budget=budget), seed=seed,
                           backbone=loaded.backbone, backbone_user_ids=loaded.user_ids)
    folder.mkdir(parents=True, exist_ok=True)
    save_sampled(sampled, split, folder / "sampled_users.json")
    # the serving tokenizer and prompt settings cut histories exactly as serving does; no weights needed
    tokenizer = AutoTokenizer.from_pretrained(str(prepare_model(settings.base_model, settings.models_dir)))
    rows = build_instructions(split, loaded, sampled, config, seed=seed,
                              count_tokens=lambda text: len(encode_text(tokenizer, text)))
    manifest = dataset_manifest(rows, split, loaded, sampled, config, seed) | {RECIPE_KEY: as_json(recipe)}
    write_dataset(rows, manifest, folder)
    return folder, len(rows), manifest["counts"], sampled.n_unique


def request_folder_options(*, layout: str, genres: bool, pool: int | None, hint_dropout: float | None,
                           backbones: tuple[str, ...], seed: int) -> list[str]:
    """The non-default choices of `recranker instructions requests`, as parts of its default folder name."""
    options = [layout] if layout != "inline" else []
    options += ["genres"] if genres else []
    options += [f"pool{pool}"] if pool is not None else []
    options += [f"hint-dropout{hint_dropout:g}"] if hint_dropout is not None else []
    options += ["+".join(backbones)] if tuple(backbones) != ("lightgcn", "sasrec") else []
    return options + ([f"seed{seed}"] if seed != 0 else [])


def build_request_dataset(settings: Settings, data: DataChoice, *, backbones: tuple[str, ...], sampling: str,
                          budget: int, seed: int, out: str | None,
                          new_items: tuple[float, int] | None = None, genres: bool = False,
                          pool: int | None = None, layout: str = "inline",
                          hint_dropout: float | None = None) -> tuple[Path, dict]:
    """Sample users, build request-shaped examples (training/requests.py) with candidates and
    hints from each backbone trained one like earlier, write them. Returns (folder, manifest).

    ``hint_dropout``: share of requests rendered without hints (default: RequestExampleConfig's;
    1.0: none has hints, so no answer can be read off the backbone's order).
    ``new_items`` = (share, seed): the items ``recranker new-items`` treats as new for the
    same share and seed are removed from the data first, so neither the backbones nor the
    instruction examples ever mention them (a clean cold-start adapter)."""
    from transformers import AutoTokenizer

    from candidate_gen.split import one_like_earlier
    from ranker.engines.tokens import encode_text
    from ranker.model import prepare_model
    from training.data_io import EXAMPLES_FILE, MANIFEST_FILE, write_json_atomic, write_jsonl_atomic
    from training.requests import RequestExampleConfig, build_request_examples, manifest, shifted_backbone
    from training.sampling import SamplingConfig, sample_users, save_sampled

    prompt = ranker_config(settings, item_genres=genres, prompt_layout=layout).prompt_config
    if hint_dropout is not None and not 0.0 <= hint_dropout <= 1.0:
        raise PipelineError(f"--hint-dropout must be between 0 and 1, got {hint_dropout}")
    # unset options keep RequestExampleConfig's defaults; pool: the backbone's top-N the negatives come from
    options = {name: value for name, value in (("pool", pool), ("hint_dropout", hint_dropout)) if value is not None}
    try:
        config = RequestExampleConfig(prompt=prompt, **options)
    except ValueError as e:
        raise PipelineError(f"--pool: {e}") from None
    split = data.split(settings)
    if genres and not any(split.dataset.genres):
        raise PipelineError(f"--genres: dataset {split.dataset.name} has no item genres "
                            "(the generic items.csv needs a 'genres' column, e.g. Action|Comedy)")
    if new_items is not None:
        from candidate_gen.data import without_items
        from candidate_gen.split import leave_one_out
        from training.new_items import hold_out_items

        share, items_seed = new_items
        held = hold_out_items(split.dataset.n_items, share, items_seed)
        split = leave_one_out(without_items(split.dataset, held, f"new-items-{share:g}-seed{items_seed}"))
    recipe = {"kind": "requests", "dataset": split.dataset.name, "data_fingerprint": split.dataset.fingerprint,
              "backbones": list(backbones), "sampling": sampling, "budget": budget, "seed": seed,
              "base_model": settings.base_model, "config": asdict(config)}
    options = request_folder_options(layout=layout, genres=genres, pool=pool, hint_dropout=hint_dropout,
                                     backbones=backbones, seed=seed)
    folder = Path(out or settings.home / "instructions" /
                  dataset_folder_name(split.dataset.name, "requests", sampling, budget, options))
    check_rebuild(folder, recipe)  # before the backbones train: a clash costs nothing
    loaded = {name: shifted_backbone(settings.home, split, name, seed) for name in backbones}
    first = loaded[backbones[0]]  # its user vectors drive the clustering part of adaptive sampling
    sampled = sample_users(one_like_earlier(split), SamplingConfig(method=sampling, budget=budget), seed=seed,
                           backbone=first.backbone, backbone_user_ids=first.user_ids)
    tokenizer = AutoTokenizer.from_pretrained(str(prepare_model(settings.base_model, settings.models_dir)))
    rows = build_request_examples(split, loaded, sampled.users.tolist(), config, seed=seed,
                                  count_tokens=lambda text: len(encode_text(tokenizer, text)))
    if not rows:
        raise ValueError("no request example: no sampled user's target is among its backbone's top candidates")
    folder.mkdir(parents=True, exist_ok=True)
    save_sampled(sampled, split, folder / "sampled_users.json")
    write_jsonl_atomic(folder / EXAMPLES_FILE, rows)
    info = manifest(rows, split, loaded, sampled, config, seed) | {RECIPE_KEY: as_json(recipe)}
    write_json_atomic(folder / MANIFEST_FILE, info)  # last: its presence means the examples are complete
    return folder, info
