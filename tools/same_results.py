"""Compare a service answer and an evaluation from two checkouts, digit for digit.

    python tools/same_results.py RANK_A.json RANK_B.json EVAL_A.json EVAL_B.json [CACHE_A.jsonl CACHE_B.jsonl]

Ignored: the answer's ``timings`` (wall clock) and the evaluation's ``adapter`` (the
adapter folder's absolute path, which names the checkout). Exit 1 on any other difference.
Used for issue 11's before/after check (docs/architecture.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def diff(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += diff(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 6):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    rank_a, rank_b, eval_a, eval_b = (_load(p) for p in argv[:4])
    problems = diff({k: v for k, v in rank_a.items() if k != "timings"},
                    {k: v for k, v in rank_b.items() if k != "timings"}, "rank")
    problems += diff({k: v for k, v in eval_a.items() if k != "adapter"},
                     {k: v for k, v in eval_b.items() if k != "adapter"}, "eval")
    if len(argv) == 6:
        lines = [sorted(Path(p).read_text().splitlines()) for p in argv[4:]]
        if lines[0] != lines[1]:
            problems.append(f"per-user outcomes differ ({len(lines[0])} vs {len(lines[1])} lines)")
    for p in problems:
        print(p)
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
