"""One settings object whose ranking defaults are the ranker's, one adapter resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candidate_gen.base import BACKBONE_NAMES, NUM_CANDIDATES
from candidate_gen.train import TRAINERS
from ranker.adapter import adapter_revision
from ranker.ensemble import EnsembleWeights
from ranker.model import BUNDLED_MODEL
from ranker.ranker import RankerConfig
from stack.build import StackError, resolve_adapter
from pydantic import ValidationError

from stack.settings import CANDIDATE_LIMIT, DEFAULT_ADAPTER, Settings, describe_settings_error, ranker_config


def test_settings_defaults_are_the_rankers() -> None:
    settings = Settings(_env_file=None)
    assert ranker_config(settings) == RankerConfig()
    for f in ("pairwise_budget", "listwise_shuffles", "history_token_budget", "use_hints"):
        assert getattr(settings, f) == getattr(RankerConfig(), f), f
    assert settings.base_model == BUNDLED_MODEL
    assert settings.num_candidates == NUM_CANDIDATES


def test_candidate_bounds_come_from_one_number() -> None:
    from service.schemas import RankIn

    for field in ("num_candidates", "top_k", "max_candidates"):
        with pytest.raises(ValueError, match="less than or equal"):
            Settings(_env_file=None, **{field: CANDIDATE_LIMIT + 1})
    with pytest.raises(ValueError, match="less than or equal"):
        RankIn(user_id="1", num_candidates=CANDIDATE_LIMIT + 1)
    assert RankIn(user_id="1", num_candidates=CANDIDATE_LIMIT).num_candidates == CANDIDATE_LIMIT


def test_the_default_count_must_be_within_the_request_limit() -> None:
    with pytest.raises(ValidationError) as e:
        Settings(_env_file=None, num_candidates=30, max_candidates=20)
    assert describe_settings_error(e.value) == (
        "invalid setting RECRANKER_NUM_CANDIDATES (30) is more than RECRANKER_MAX_CANDIDATES (20): every request "
        "without its own count would be refused")
    assert Settings(_env_file=None, num_candidates=20, max_candidates=20).num_candidates == 20


def test_backbone_names_are_listed_once() -> None:
    assert tuple(TRAINERS) == BACKBONE_NAMES
    with pytest.raises(ValueError, match="backbone"):
        Settings(_env_file=None, backbone="bert4rec")


def test_adapter_is_resolved_once_with_name_revision_and_weights(tmp_path: Path) -> None:
    adapter = resolve_adapter(Settings(_env_file=None))  # the shipped default
    assert adapter is not None and adapter.path == DEFAULT_ADAPTER
    assert adapter.name == DEFAULT_ADAPTER.name and adapter.revision == adapter_revision(DEFAULT_ADAPTER)
    stored = json.loads((DEFAULT_ADAPTER / "hybrid_weights.json").read_text())
    # either format: flat (chosen with hints on) or one object per hint setting
    assert adapter.weights == EnsembleWeights(**stored.get("hints_on", stored))
    if "hints_off" in stored:
        assert adapter.weight_set.for_hints(False) == EnsembleWeights(**stored["hints_off"])

    assert resolve_adapter(Settings(_env_file=None), "none") is None
    assert resolve_adapter(Settings(_env_file=None, adapter="none")) is None
    with pytest.raises(StackError, match="does not exist"):
        resolve_adapter(Settings(_env_file=None), str(tmp_path / "missing"))
    with pytest.raises(StackError, match="adapter_config.json"):
        resolve_adapter(Settings(_env_file=None), str(tmp_path))


def test_adapter_revision_changes_with_the_weights(tmp_path: Path) -> None:
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / f).write_bytes((DEFAULT_ADAPTER / f).read_bytes())
    before = adapter_revision(tmp_path)
    assert before == adapter_revision(DEFAULT_ADAPTER)
    with open(tmp_path / "adapter_model.safetensors", "ab") as fh:
        fh.write(b"\0")
    assert adapter_revision(tmp_path) != before


def test_weights_chosen_for_another_revision_are_flagged(tmp_path: Path, caplog) -> None:
    from ranker.adapter import load_adapter

    for f in ("adapter_config.json", "adapter_model.safetensors", "hybrid_weights.json"):
        (tmp_path / f).write_bytes((DEFAULT_ADAPTER / f).read_bytes())
    assert json.loads((tmp_path / "hybrid_weights.json").read_text())["evidence"]["hints_on"]["adapter_revision"] \
        == adapter_revision(DEFAULT_ADAPTER)  # the shipped weights name the adapter they were chosen for
    with caplog.at_level("WARNING", logger="ranker.adapter"):
        load_adapter(tmp_path)
    assert "chosen for adapter revision" not in caplog.text
    with open(tmp_path / "adapter_model.safetensors", "ab") as fh:
        fh.write(b"\0")  # retrained in place
    with caplog.at_level("WARNING", logger="ranker.adapter"):
        load_adapter(tmp_path)
    assert "hints_on hybrid weights were chosen for adapter revision" in caplog.text



def test_an_adapter_is_served_in_the_item_text_it_was_tuned_on(tmp_path: Path, caplog) -> None:
    from ranker.adapter import load_adapter
    from stack.build import served_ranker_config

    settings = Settings(_env_file=None)
    shipped = load_adapter(DEFAULT_ADAPTER)  # tuned by `instructions requests --genres`
    assert shipped.item_genres and served_ranker_config(settings, shipped).prompt_config.genres
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / f).write_bytes((DEFAULT_ADAPTER / f).read_bytes())
    config = json.loads((DEFAULT_ADAPTER / "train_config.json").read_text())
    config["dataset"]["manifest"]["config"]["prompt"]["genres"] = False  # as a run without --genres records
    (tmp_path / "train_config.json").write_text(json.dumps(config))
    titles_only = load_adapter(tmp_path)
    assert not titles_only.item_genres and not served_ranker_config(settings, titles_only).prompt_config.genres
    assert not served_ranker_config(settings, None).prompt_config.genres  # the base model: titles only
    (tmp_path / "train_config.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="ranker.adapter"):
        assert not load_adapter(tmp_path).item_genres
    assert "no prompt settings recorded" in caplog.text


def test_an_adapter_is_served_in_the_prompt_layout_it_was_tuned_on(tmp_path: Path) -> None:
    from ranker.adapter import AdapterError, load_adapter
    from stack.build import served_ranker_config

    settings = Settings(_env_file=None)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / f).write_bytes((DEFAULT_ADAPTER / f).read_bytes())
    shipped = load_adapter(DEFAULT_ADAPTER)  # tuned by `instructions requests --genres --layout catalogue`
    assert shipped.prompt_layout == "catalogue" and served_ranker_config(settings, shipped).prompt_config.catalogue
    config = json.loads((DEFAULT_ADAPTER / "train_config.json").read_text())
    del config["dataset"]["manifest"]["config"]["prompt"]["layout"]  # as an adapter tuned before layouts records
    (tmp_path / "train_config.json").write_text(json.dumps(config))
    older = load_adapter(tmp_path)
    assert older.prompt_layout == "inline" and not served_ranker_config(settings, older).prompt_config.catalogue
    assert not served_ranker_config(settings, None).prompt_config.catalogue  # the base model: inline
    config["dataset"]["manifest"]["config"]["prompt"]["layout"] = "spiral"  # from a newer version
    (tmp_path / "train_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match="prompt layout 'spiral', which this version does not know"):
        load_adapter(tmp_path)


def test_weights_chosen_over_another_backbone_are_flagged() -> None:
    from ranker.adapter import load_adapter
    from stack.build import weights_chosen_elsewhere

    shipped = load_adapter(DEFAULT_ADAPTER).weight_set
    assert {ev["backbone_model"] for ev in shipped.evidence.values()} == {"lightgcn+recency"}
    assert weights_chosen_elsewhere(shipped, "lightgcn+recency") == []
    lines = weights_chosen_elsewhere(shipped, "sasrec")
    assert len(lines) == len(shipped.evidence) and \
        "chosen over lightgcn+recency candidates, this stack serves sasrec" in lines[0]
    assert "answers in the backbone's order" in lines[0]


def test_recency_follows_the_settings_else_the_backbones_own_choice() -> None:
    from candidate_gen.recency import RecencyConfig
    from candidate_gen.split import leave_one_out
    from stack.build import recency_rescorer
    from tests.datasets import dataset_from_rows

    rows = [(0, 0, 5.0, 1), (0, 1, 5.0, 2), (0, 2, 5.0, 3), (1, 1, 5.0, 1), (1, 2, 5.0, 2), (1, 0, 5.0, 3)]
    split = leave_one_out(dataset_from_rows(rows, 2, 3))
    chosen = {"model": "lightgcn", "recency": {"weight": 3.0, "window": 2, "evidence": {}}}
    assert recency_rescorer(Settings(), split, {"model": "lightgcn"}) is None  # trained before the choice existed
    assert recency_rescorer(Settings(), split, chosen).config == RecencyConfig(3.0, 2)
    assert recency_rescorer(Settings(recency_weight=0), split, chosen) is None  # 0 switches it off
    assert recency_rescorer(Settings(recency_window=5), split, chosen).config == RecencyConfig(3.0, 5)
    assert recency_rescorer(Settings(recency_weight=1.5, recency_window=4), split, {}).config == RecencyConfig(1.5, 4)
    with pytest.raises(ValidationError, match="recency_weight"):
        Settings(recency_weight=-1)
