"""The `recranker` command line: what users type, what they get, and one readable line
with exit code 2 when something is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recranker.cli import main


@pytest.fixture
def env(monkeypatch, tmp_path: Path, shared_data_dir: Path) -> Path:
    for var in ("RECRANKER_ADAPTER", "RECRANKER_BASE_MODEL", "RECRANKER_DATASET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RECRANKER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECRANKER_DATA_DIR", str(shared_data_dir))
    return tmp_path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("recranker: error: ")
    return err[0]


def test_data_prepare_prints_the_split_counts(env, capsys) -> None:
    assert main(["data", "prepare"]) == 0
    out = capsys.readouterr().out
    assert "users_with_likes: 942" in out and "likes: 55,375" in out


def test_backbone_train_then_evaluate_writes_json(env, capsys) -> None:
    assert main(["backbone", "train", "--model", "pop"]) == 0
    assert (env / "home" / "backbones" / "ml-100k" / "pop" / "artifact.json").is_file()
    out = env / "pop.json"
    assert main(["backbone", "evaluate", "--model", "pop", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "pop" and report["users"] == 942
    assert round(report["metrics"]["NDCG@10"], 4) == 0.0489  # pop is deterministic (docs/results.md)


def test_missing_dataset_folder_is_one_line_exit_2(env, capsys) -> None:
    assert main(["data", "prepare", "--dataset-path", str(env / "nowhere")]) == 2
    assert "nowhere" in _one_error_line(capsys)


def test_invalid_environment_setting_names_the_variable(env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RECRANKER_TOP_K", "0")
    assert main(["data", "prepare"]) == 2
    assert "RECRANKER_TOP_K" in _one_error_line(capsys)


def test_missing_adapter_folder_is_named_before_any_model_loads(env, capsys) -> None:
    rc = main(["evaluate", "--backbone", "pop", "--adapter", str(env / "no-adapter"), "--users", "3",
               "--json", str(env / "eval.json")])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "no-adapter" in line and "does not exist" in line
    assert not (env / "eval.json").exists()


def test_more_candidates_than_a_catalogue_adapter_shows_is_one_line_exit_2(env, capsys) -> None:
    from stack.settings import DEFAULT_ADAPTER

    adapter = env / "catalogue-adapter"
    adapter.mkdir()
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (adapter / f).write_bytes((DEFAULT_ADAPTER / f).read_bytes())
    config = json.loads((DEFAULT_ADAPTER / "train_config.json").read_text())
    config["dataset"]["manifest"]["config"]["prompt"]["layout"] = "catalogue"
    (adapter / "train_config.json").write_text(json.dumps(config))
    rc = main(["evaluate", "--backbone", "pop", "--adapter", str(adapter), "--candidates", "21", "--users", "3",
               "--json", str(env / "eval.json")])
    assert rc == 2
    assert "--candidates 21: this adapter's catalogue prompt layout ranks at most 20" in _one_error_line(capsys)
    assert not (env / "eval.json").exists()


def test_unknown_backbone_is_an_argparse_error(env, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["backbone", "train", "--model", "bpr-gnn"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bpr-gnn'" in capsys.readouterr().err


def test_an_unknown_prompt_layout_is_an_argparse_error(env, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["instructions", "requests", "--layout", "grid", "--out", str(env / "requests")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'grid' (choose from 'inline', 'catalogue')" in capsys.readouterr().err
    assert not (env / "requests").exists()


def test_lora_targets_name_sets_or_modules() -> None:
    from recranker.cli import CLIError, _lora_targets

    assert _lora_targets("attention") == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert set(_lora_targets("all")) >= {"gate_proj", "up_proj", "down_proj", "q_proj"}
    assert _lora_targets(" q_proj , v_proj ") == ("q_proj", "v_proj")
    with pytest.raises(CLIError, match="--lora-targets"):
        _lora_targets(" , ")


def test_tune_tasks_subset_of_modes(env, capsys) -> None:
    from recranker.cli import _tasks

    assert _tasks("listwise") == ("listwise",)
    assert _tasks(" pairwise , listwise ") == ("pairwise", "listwise")
    out = env / "adapter"
    assert main(["tune", "--data", str(env), "--out", str(out), "--tasks", "listwise,ranking"]) == 2
    assert "--tasks takes a comma-separated subset of pointwise,pairwise,listwise" in _one_error_line(capsys)
    assert not out.exists()


def test_without_new_items_share_out_of_range_is_one_line_exit_2(env, capsys) -> None:
    out = env / "requests"
    assert main(["instructions", "requests", "--without-new-items", "1.5", "--out", str(out)]) == 2
    assert "--without-new-items must be between 0 and 1" in _one_error_line(capsys)
    assert not out.exists()


def test_a_pool_smaller_than_a_request_is_one_line_exit_2(env, capsys) -> None:
    out = env / "requests"
    assert main(["instructions", "requests", "--pool", "5", "--out", str(out)]) == 2
    assert "--pool: pool (5) must be >= n_candidates (10)" in _one_error_line(capsys)
    assert not out.exists()


def test_a_hint_dropout_outside_0_1_is_one_line_exit_2(env, capsys) -> None:
    out = env / "requests"
    assert main(["instructions", "requests", "--hint-dropout", "1.5", "--out", str(out)]) == 2
    assert "--hint-dropout must be between 0 and 1, got 1.5" in _one_error_line(capsys)
    assert not out.exists()


def test_genres_on_data_without_genres_is_one_line_exit_2(env, capsys) -> None:
    data = env / "shop"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    (data / "interactions.csv").write_text("user_id,item_id,rating,timestamp\nu,a,5,1\nu,b,4,2\nv,a,4,3\n")
    out = env / "requests"
    assert main(["instructions", "requests", "--dataset-path", str(data), "--genres", "--out", str(out)]) == 2
    assert "--genres: dataset shop has no item genres" in _one_error_line(capsys)
    assert not out.exists()


def test_weights_with_an_unknown_objective_is_one_line_exit_2_before_any_scoring(env, capsys) -> None:
    import shutil

    from stack.settings import DEFAULT_ADAPTER

    adapter = env / "adapter"
    shutil.copytree(DEFAULT_ADAPTER, adapter)
    before = (adapter / "hybrid_weights.json").read_text()
    assert main(["weights", "--adapter", str(adapter), "--objective", "MRR", "--users", "3"]) == 2
    assert "--objective: metric must be HR@k or NDCG@k" in _one_error_line(capsys)
    assert (adapter / "hybrid_weights.json").read_text() == before


def test_instruction_data_from_another_recipe_is_kept_and_the_clash_is_one_line(env, capsys) -> None:
    out = env / "data"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "recranker-instructions/1"}))  # no recipe recorded
    (out / "examples.jsonl").write_text('{"task": "pointwise"}\n')
    assert main(["instructions", "build", "--backbone", "pop", "--budget", "5", "--out", str(out)]) == 2
    assert "already holds instruction data built by an older version" in _one_error_line(capsys)
    assert (out / "examples.jsonl").read_text() == '{"task": "pointwise"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["examples.jsonl", "manifest.json"]


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--backbone", "pop", "--users", "0", "--json", "{tmp}/out.json"], "users must be >= 1, got 0"),
    (["weights", "--backbone", "pop", "--candidates", "0"], "num_candidates must be >= 1, got 0"),
    (["new-items", "--candidates", "1", "--json", "{tmp}/out.json"], "new items need --candidates >= 2"),
])
def test_bad_counts_are_one_line_before_any_model_loads(env, capsys, argv, message) -> None:
    assert main([a.replace("{tmp}", str(env)) for a in argv]) == 2
    assert message in _one_error_line(capsys)
    assert not (env / "home" / "models").exists()  # the model was never prepared


def test_serve_on_a_taken_port_is_one_line_before_any_model_loads(env, capsys) -> None:
    import socket

    from service.server import check_port_free

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        line = _one_error_line(capsys)
        assert f"cannot listen on 127.0.0.1:{port}" in line and "RECRANKER_PORT" in line
    assert not (env / "home" / "models").exists()  # failed before the model was prepared
    check_port_free("127.0.0.1", port)  # free again once released


def test_model_prepare_of_a_hub_id_says_what_happens_instead_of_ready(env, capsys) -> None:
    assert main(["model", "prepare", "--model", "SomeOrg/some-instruct-model"]) == 0
    out = capsys.readouterr().out
    assert "SomeOrg/some-instruct-model is a Hugging Face hub id" in out and "ready" not in out
