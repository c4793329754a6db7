"""training.data_io: dataset folders hold one recipe each; another recipe is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data_io import (MANIFEST_FILE, RECIPE_KEY, DatasetFolderError, check_rebuild, dataset_folder_name,
                              write_json_atomic)
from training.pipeline import request_folder_options

RECIPE = {"kind": "requests", "budget": 50, "seed": 0, "backbones": ("lightgcn", "sasrec"),
          "config": {"pool": 30, "prompt": {"layout": "inline", "genres": False}}}


def _folder_with(tmp_path: Path, manifest: dict) -> Path:
    folder = tmp_path / "data"
    write_json_atomic(folder / MANIFEST_FILE, manifest)
    (folder / "examples.jsonl").write_text('{"id": 1}\n')
    return folder


def test_a_new_or_same_recipe_folder_may_be_written(tmp_path: Path) -> None:
    check_rebuild(tmp_path / "absent", RECIPE)  # nothing there yet
    check_rebuild(_folder_with(tmp_path, {RECIPE_KEY: json.loads(json.dumps(RECIPE))}), RECIPE)  # tuples vs lists


def test_another_recipe_is_refused_naming_what_differs(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, {RECIPE_KEY: json.loads(json.dumps(RECIPE))})
    other = {**RECIPE, "config": {"pool": 30, "prompt": {"layout": "catalogue", "genres": False}}}
    with pytest.raises(DatasetFolderError) as e:
        check_rebuild(folder, other)
    msg = str(e.value)
    assert "config.prompt.layout ('inline' there, 'catalogue' now)" in msg and "--out" in msg
    assert "pool" not in msg  # only what differs
    assert (folder / "examples.jsonl").read_text() == '{"id": 1}\n'


def test_a_folder_from_before_recipes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetFolderError, match="older version"):
        check_rebuild(_folder_with(tmp_path, {"format": "recranker-requests/1"}), RECIPE)


def test_default_folder_names_carry_every_non_default_choice() -> None:
    defaults = dict(layout="inline", genres=False, pool=None, hint_dropout=None, backbones=("lightgcn", "sasrec"),
                    seed=0)
    assert dataset_folder_name("ml-100k", "requests", "adaptive", 5000,
                               request_folder_options(**defaults)) == "ml-100k-requests-adaptive-5000"
    variants = [dict(defaults, layout="catalogue"), dict(defaults, genres=True), dict(defaults, pool=10),
                dict(defaults, hint_dropout=1.0), dict(defaults, backbones=("sasrec",)), dict(defaults, seed=3),
                dict(defaults, layout="catalogue", genres=True)]
    names = {dataset_folder_name("ml-100k", "requests", "adaptive", 5000, request_folder_options(**v))
             for v in variants}
    assert len(names) == len(variants) and "ml-100k-requests-adaptive-5000" not in names
    assert "ml-100k-requests-adaptive-5000-catalogue-genres" in names
