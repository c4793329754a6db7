"""The package import graph of the repository, read from the code (an ast walk; nothing
is imported), and the layer contract it must satisfy.

    python tools/import_graph.py [ROOT]            # mermaid graph of ROOT (default: this repo)
    python tools/import_graph.py --check [ROOT]    # exit 1 listing every forbidden arrow / cycle

tests/test_architecture.py runs the same check in CI. docs/architecture.md shows the
graph before and after issue 11, both printed by this script.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# Which first-party package may import which (besides itself). Bottom to top; an arrow
# only points down. Anything not listed for a package is forbidden.
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "candidate_gen": frozenset({"common"}),
    "ranker": frozenset({"common"}),
    "stack": frozenset({"common", "candidate_gen", "ranker"}),
    "service": frozenset({"common", "candidate_gen", "ranker", "stack"}),
    "training": frozenset({"common", "candidate_gen", "ranker", "stack"}),
    "recranker": frozenset({"common", "candidate_gen", "ranker", "stack", "service", "training"}),
}
# folders that are code but not layers: scripts and tests may use anything
NOT_LAYERS = ("tests", "bench", "tools", "deploy", "docs", "models", ".venv")


@dataclass(frozen=True)
class Arrow:
    source: str  # importing package
    target: str  # imported package
    module: str  # importing module, e.g. ranker.ranker
    line: int
    name: str  # the imported module as written


def packages(root: Path) -> list[str]:
    """Top-level first-party packages (folders with __init__.py), layers and not."""
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and (p / "__init__.py").is_file() and p.name not in NOT_LAYERS)


def _imports(tree: ast.AST, module: str, is_package: bool):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name


def arrows(root: Path) -> list[Arrow]:
    """Every import from one first-party package into another, anywhere in a module
    (function-level imports included: a lazy import is still a dependency)."""
    root = Path(root)
    pkgs = set(packages(root))
    out = []
    for pkg in sorted(pkgs):
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            is_package = rel.name == "__init__"
            module = ".".join(rel.parts[:-1] if is_package else rel.parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, name in _imports(tree, module, is_package):
                target = name.split(".")[0]
                if target in pkgs and target != pkg:
                    out.append(Arrow(pkg, target, module, line, name))
    return out


def package_graph(found: list[Arrow]) -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for a in found:
        edges[(a.source, a.target)] += 1
    return dict(sorted(edges.items()))


def cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one package (each holds a cycle)."""
    graph = defaultdict(set)
    for s, t in edges:
        graph[s].add(t)
        graph.setdefault(t, set())
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def violations(root: Path, allowed: dict[str, frozenset[str]] = ALLOWED) -> list[str]:
    """One line per forbidden arrow, unknown package or cycle; empty = the contract holds."""
    found = arrows(root)
    problems = [f"package {p!r} is not in the layer contract (tools/import_graph.py ALLOWED)"
                for p in packages(root) if p not in allowed]
    for a in found:
        if a.source in allowed and a.target not in allowed[a.source]:
            problems.append(f"{a.module}:{a.line} imports {a.name} ({a.source} -> {a.target} is not allowed)")
    for comp in cycles(package_graph(found)):
        problems.append(f"import cycle between packages {comp}")
    return problems


def mermaid(root: Path) -> str:
    edges = package_graph(arrows(root))
    lines = ["graph TD"]
    for pkg in packages(root):
        lines.append(f"    {pkg}")
    for (s, t), n in edges.items():
        lines.append(f"    {s} -->|{n}| {t}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--check", action="store_true", help="check the layer contract instead of printing the graph")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if args.check:
        problems = violations(root)
        for p in problems:
            print(p)
        return 1 if problems else 0
    print(mermaid(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
