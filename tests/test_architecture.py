"""The layer contract, checked on every run: imports only point down, no package cycles.

    common  <-  candidate_gen, ranker  <-  stack  <-  service, training  <-  recranker

(tools/import_graph.py holds the allowed graph and the ast walk; docs/architecture.md
explains it.) The checker itself is tested on small synthetic trees, so a contract test
that could never fail would be caught here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_checker():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


graph = _load_checker()


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp


def test_repository_follows_the_layer_contract() -> None:
    problems = graph.violations(ROOT)
    assert problems == [], "forbidden imports:\n" + "\n".join(problems)


def test_every_layer_package_is_in_the_contract() -> None:
    assert set(graph.packages(ROOT)) == set(graph.ALLOWED)


@pytest.mark.parametrize("source, target, import_line", [
    ("ranker", "candidate_gen", "from candidate_gen.data import Dataset\n"),  # sideways
    ("candidate_gen", "stack", "import stack.settings\n"),  # upward
    ("service", "training", "from training import pipeline\n"),  # sideways at the top
    ("stack", "service", "def f():\n    from service.main import create_app\n"),  # lazy, still upward
    ("service", "recranker", "from recranker.cli import main\n"),  # into the CLI
])
def test_checker_catches_a_forbidden_arrow(tmp_path: Path, source: str, target: str, import_line: str) -> None:
    files = {f"{p}/__init__.py": "" for p in graph.ALLOWED}
    files[f"{source}/bad.py"] = import_line
    problems = graph.violations(_tree(tmp_path, files))
    assert any(f"{source}.bad" in p and f"{source} -> {target}" in p for p in problems), problems


def test_checker_allows_downward_and_relative_imports(tmp_path: Path) -> None:
    files = {f"{p}/__init__.py": "" for p in graph.ALLOWED}
    files["stack/ok.py"] = "from ranker.types import Candidate\nfrom candidate_gen import data\nfrom . import other\n"
    files["ranker/modes/x.py"] = "from ..types import Candidate\nfrom .base import ModePlan\n"
    assert graph.violations(_tree(tmp_path, files)) == []


def test_checker_resolves_relative_imports_out_of_a_package(tmp_path: Path) -> None:
    files = {f"{p}/__init__.py": "" for p in graph.ALLOWED}
    # ranker/x.py doing `from ..stack import y` climbs out of ranker into stack: upward
    files["ranker/x.py"] = "from ..stack import settings\n"
    arrows = graph.arrows(_tree(tmp_path, files))
    assert [(a.source, a.target) for a in arrows] == [("ranker", "stack")]


def test_checker_reports_cycles_and_unknown_packages(tmp_path: Path) -> None:
    files = {"a/__init__.py": "import b\n", "b/__init__.py": "import a\n"}
    problems = graph.violations(_tree(tmp_path, files), allowed={"a": frozenset({"b"}), "b": frozenset({"a"})})
    assert problems == ["import cycle between packages ['a', 'b']"]
    files["c/__init__.py"] = ""
    problems = graph.violations(_tree(tmp_path, files), allowed={"a": frozenset({"b"}), "b": frozenset({"a"})})
    assert any("'c' is not in the layer contract" in p for p in problems)
