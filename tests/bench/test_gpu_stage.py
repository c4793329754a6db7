"""What travels to a lent GPU machine stays small: config, tokenizer, data, backbones, no weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gpu_stage import stage


def test_stage_copies_everything_but_the_weights(tmp_path: Path, ml100k_dir: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (model / name).write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 1024)
    home = tmp_path / "home"
    (home / "backbones" / "ml-100k" / "pop").mkdir(parents=True)
    (home / "backbones" / "ml-100k" / "pop" / "artifact.json").write_text("{}")
    stage(model, ml100k_dir, home, tmp_path / "out")
    staged = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert staged == {"model/config.json", "model/tokenizer.json", "model/tokenizer_config.json",
                      "model/chat_template.jinja", "data/ml-100k/u.data", "data/ml-100k/u.item",
                      "home/backbones/ml-100k/pop/artifact.json"}


def test_stage_refuses_a_folder_that_is_not_a_checkpoint(tmp_path: Path, ml100k_dir: Path) -> None:
    with pytest.raises(SystemExit, match="no config.json"):
        stage(tmp_path, ml100k_dir, None, tmp_path / "out")
