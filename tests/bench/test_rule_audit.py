"""bench.rule_audit: recorded selections judged by the old and the new serving rule."""

from __future__ import annotations

import json

from bench.rule_audit import audit_record, distinct, main, summary


def _evidence(diff, ci, cv_diff, cv_ci, test=None):
    ev = {"diff": diff, "ci": ci, "cross_validated": {"diff": cv_diff, "ci": cv_ci}, "users": 942,
          "backbone_model": "lightgcn", "best_llm_weights": {"pointwise": 0.5}}
    if test:
        ev["test_gap"] = {"diff": test[0], "ci": test[1]}
    return ev


# the AMX selection of docs/results.md: passed the mean rule, lost on test
AMX = _evidence(0.0100, [0.0024, 0.0176], 0.0065, [-0.0025, 0.0154], test=(-0.0023, [-0.0102, 0.0058]))
SURE = _evidence(0.0200, [0.0100, 0.0300], 0.0150, [0.0050, 0.0250])


def test_the_interval_rule_rejects_what_the_mean_rule_let_through():
    [row] = audit_record("amx.json", {"hints_on": AMX, "hints_off": {"note": "kept"}})
    assert row["mean_rule"] and not row["interval_rule"]
    assert row["test"] == {"diff": -0.0023, "ci": [-0.0102, 0.0058]}
    [row] = audit_record("sure.json", {"hints_on": SURE})
    assert row["mean_rule"] and row["interval_rule"] and row["test"] is None


def test_repeated_records_count_once_and_the_summary_counts_verdicts(tmp_path, capsys):
    rows = distinct(audit_record("a.json", {"hints_on": AMX}) + audit_record("b.json", {"hints_on": AMX, "hints_off": SURE}))
    assert [r["record"] for r in rows] == ["a.json", "b.json"]
    s = summary(rows)
    assert s == {"verdicts": 2, "in_sample_interval_above_0": 2, "passed_mean_rule": 2, "passed_interval_rule": 1,
                 "with_test": 1, "test_diff_above_0": 0, "test_interval_above_0": 0}
    (tmp_path / "a.json").write_text(json.dumps({"hints_on": AMX}))
    out = tmp_path / "audit.json"
    assert main([str(tmp_path / "a.json"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["summary"]["passed_mean_rule"] == 1
    assert "| a.json | hints_on | +0.0100 [+0.0024, +0.0176]" in capsys.readouterr().out
