"""Every recorded weight selection judged by the serving rule, then and now, next to test.

Reads selection records (the ``hybrid_weights_selection.json`` that `recranker weights`
writes beside an adapter; copies under docs/eval/) and prints, per record and hint
setting: the best LLM mix's in-sample paired difference and 95% CI, the cross-validated
difference and CI, the verdict of the rule before 2026-12-06 (cross-validated *mean* above
0) and of the rule now (cross-validated *interval* above 0), and the same weights on test
where ``--test-gap`` scored them after the choice. No LLM work.

    python -m bench.rule_audit docs/eval/*selection*.json --out docs/eval/rule-audit.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.weights import serves_llm


def mean_rule(diff: float, ci_low: float, cv_diff: float) -> bool:
    """The rule until 2026-12-06: in-sample interval above 0 and cross-validated mean above 0."""
    return diff > 0 and ci_low > 0 and cv_diff > 0


def audit_record(name: str, record: dict) -> list[dict]:
    """One row per hint setting of a selection record that holds a verdict."""
    rows = []
    for key in ("hints_on", "hints_off"):
        ev = record.get(key)
        if not isinstance(ev, dict) or "ci" not in ev or "cross_validated" not in ev:
            continue  # kept from an earlier selection, or a record older than cross-validation
        cv = ev["cross_validated"]
        test = ev.get("test_gap") or {}
        rows.append({
            "record": name, "hints": key, "backbone": ev.get("backbone_model") or record.get("backbone"),
            "users": ev.get("users"), "best_llm_weights": ev.get("best_llm_weights"),
            "diff": ev["diff"], "ci": ev["ci"], "cross_validated": {"diff": cv["diff"], "ci": cv["ci"]},
            "mean_rule": mean_rule(ev["diff"], ev["ci"][0], cv["diff"]),
            "interval_rule": serves_llm(ev["diff"], ev["ci"][0], cv["ci"][0]),
            "test": {"diff": test["diff"], "ci": test["ci"]} if "diff" in test else None,
        })
    return rows


def distinct(rows: list[dict]) -> list[dict]:
    """Rows without repeats: a selection run for one hint setting copies the other
    setting's earlier record verbatim, so the same verdict appears in several files."""
    seen, out = set(), []
    for r in rows:
        key = (r["hints"], r["backbone"], r["diff"], tuple(r["ci"]), r["cross_validated"]["diff"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def summary(rows: list[dict]) -> dict:
    tested = [r for r in rows if r["test"]]
    return {
        "verdicts": len(rows),
        "in_sample_interval_above_0": sum(r["ci"][0] > 0 for r in rows),
        "passed_mean_rule": sum(r["mean_rule"] for r in rows),
        "passed_interval_rule": sum(r["interval_rule"] for r in rows),
        "with_test": len(tested),
        "test_diff_above_0": sum(r["test"]["diff"] > 0 for r in tested),
        "test_interval_above_0": sum(r["test"]["ci"][0] > 0 for r in tested),
    }


def _fmt(d: float, ci) -> str:
    return f"{d:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", type=Path, help="hybrid_weights_selection.json files")
    ap.add_argument("--out", type=Path, help="write the rows and the summary as JSON")
    args = ap.parse_args(argv)
    rows = []
    for path in args.records:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"{path}: not a readable selection record ({e})") from None
        rows += audit_record(path.name, record)
    rows = distinct(rows)
    print("| record | hints | validation | cross-validated | mean rule | interval rule | test (after the choice) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        test = _fmt(r["test"]["diff"], r["test"]["ci"]) if r["test"] else "-"
        print(f"| {r['record']} | {r['hints']} | {_fmt(r['diff'], r['ci'])} | "
              f"{_fmt(r['cross_validated']['diff'], r['cross_validated']['ci'])} | "
              f"{'LLM' if r['mean_rule'] else 'backbone'} | {'LLM' if r['interval_rule'] else 'backbone'} | {test} |")
    out = {"rows": rows, "summary": summary(rows)}
    print(json.dumps(out["summary"]))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
