"""What travels to a lent GPU machine stays small: config, tokenizer, data, backbones; weights
only in parts that are checked when joined."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.gpu_stage import join_parts, split_file, stage


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


def _blob(tmp_path: Path, size: int) -> Path:
    src = tmp_path / "model.gguf"
    src.write_bytes(bytes(i * 7 % 251 for i in range(size)))
    return src


def test_split_then_join_gives_the_same_bytes_one_folder_per_part(tmp_path: Path) -> None:
    src = _blob(tmp_path, (5 << 20) + 123)  # 5 MiB and a bit: parts of 2, 2 and 1+ MiB
    manifest = split_file(src, tmp_path / "parts", part_mib=2)
    assert [p["bytes"] for p in manifest["parts"]] == [2 << 20, 2 << 20, (1 << 20) + 123]
    assert sorted(d.name for d in (tmp_path / "parts").iterdir() if d.is_dir()) == ["part-0", "part-1", "part-2"]
    out = join_parts(tmp_path / "parts", tmp_path / "there" / "model.gguf")
    assert out.read_bytes() == src.read_bytes()


def test_join_names_the_parts_that_have_not_travelled_yet(tmp_path: Path) -> None:
    split_file(_blob(tmp_path, 3 << 20), tmp_path / "parts", part_mib=1)
    shutil.rmtree(tmp_path / "parts" / "part-2")
    with pytest.raises(SystemExit, match="parts not here yet: part-2/model.gguf.2"):
        join_parts(tmp_path / "parts", tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_join_refuses_a_damaged_part_and_writes_nothing(tmp_path: Path) -> None:
    split_file(_blob(tmp_path, 3 << 20), tmp_path / "parts", part_mib=1)
    part = tmp_path / "parts" / "part-1" / "model.gguf.1"
    data = bytearray(part.read_bytes())
    data[100] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="part part-1/model.gguf.1 is damaged"):
        join_parts(tmp_path / "parts", tmp_path / "out.gguf")
    assert not list(tmp_path.glob("out.gguf*"))
