"""A real Prometheus scrapes a running service and answers every dashboard query; the
alerting rules pass promtool's syntax check and their unit tests.

The service is a real process (uvicorn, the real app, ML-100K, a pop backbone, the real
Redis) with a fast fake engine (tests/service/fake_engine_app.py): the real model would
add a minute and prove nothing more about the metrics. Prometheus and promtool come from
Debian's `prometheus` package (.ci/run installs it); where they are missing these tests
skip and say so.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.service.conftest import REDIS_URL
from tests.service.fake_engine_app import FAIL_MARK, free_port, start_service, stop, wait_until

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/dashboards/recranker.json"
PROM_DIR = REPO / "deploy/prometheus"
RATE_WINDOW = "20s"  # stands for Grafana's $__rate_interval: >= 4 scrapes at 1 s, all inside the traffic
# panels whose value must be positive after the traffic below (the rest may rightly be 0)
MUST_BE_POSITIVE = ("p95 {{endpoint}}", "{{endpoint}} {{status}}", "tokens/s", "forward passes/s", "hit ratio",
                    "p50", "mean", "{{mode}}", "{{source}}")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian: apt-get install prometheus; .ci/run does this)")
    return path


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = _binary("promtool")
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 3 rules found" in check.stdout
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {"RecRankerRankLatencyP95High", "RecRankerDegradedAnswersHigh", "RecRankerRedisErrors"}
    tests = yaml.safe_load((PROM_DIR / "alerts.test.yml").read_text())["tests"]
    firing = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for case in tests for t in case["alert_rule_test"] if not t["exp_alerts"]}
    assert firing == quiet == names, "each rule needs a case where it fires and one where it stays quiet"
    unit = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = _binary("promtool")
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["rule_files"] = [str(PROM_DIR / "alerts.yml")]  # the container path, mapped to the repo's file
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _panel_queries() -> list[tuple[str, str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["legendFormat"], t["expr"].replace("$__rate_interval", RATE_WINDOW))
            for p in dash["panels"] for t in p["targets"]]


def _traffic(url: str, seconds: float) -> dict[str, int]:
    """Rank (new and repeated requests), batches, events and engine failures, for ``seconds``."""
    counts = {"rank": 0, "cached": 0, "degraded": 0}
    user = f"prom-user-{uuid.uuid4().hex[:8]}"
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/v1/events", json={"user_id": user, "events": [{"item_id": "50", "rating": 5}]}).status_code == 200
        i = 0
        while time.monotonic() < end or i < 6:  # >= 6 rounds: users 1-4 come back, so the cache hits
            r = c.post("/v1/rank", json={"user_id": str(1 + i % 4), "k": 2, "num_candidates": 4})
            assert r.status_code == 200, r.text
            counts["rank"] += 1
            counts["cached"] += r.json()["cached"]
            r = c.post("/v1/rank", json={"user_id": user, "k": 2, "modes": ["pointwise"],
                                         "candidates": ["1", "2", {"item_id": f"new-{i}", "title": f"{FAIL_MARK} {i}"}]})
            assert r.status_code == 200 and r.json()["degraded"], r.text
            counts["degraded"] += 1
            r = c.post("/v1/rank/batch", json={"requests": [{"user_id": str(10 + i), "k": 2},
                                                            {"user_id": str(11 + i), "k": 2}]})
            assert r.status_code == 200, r.text
            c.get("/readyz")
            i += 1
            time.sleep(0.2)
    return counts


def test_real_prometheus_answers_every_dashboard_query(tmp_path: Path, shared_data_dir: Path, redis_prefix: str) -> None:
    prometheus = _binary("prometheus")
    service, url = start_service(tmp_path, shared_data_dir, REDIS_URL, redis_prefix, "svc")
    prom_port = free_port()
    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROM_DIR / "alerts.yml")],
        "scrape_configs": [{"job_name": "recranker", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [url.removeprefix("http://")]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    log = tmp_path / "prometheus.log"
    prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                             "--log.level=warn"], stdout=log.open("w"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> list[dict]:
        body = httpx.get(f"{api}/query", params={"query": expr}, timeout=5).json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{prom_port}/-/ready", timeout=1).status_code == 200,
                   30, "prometheus ready", prom, log)
        wait_until(lambda: [s for s in query('up{job="recranker"}') if s["value"][1] == "1"], 15,
                   "the service scraped", prom, log)
        counts = _traffic(url, seconds=8)
        time.sleep(2.5)  # two more scrapes after the last request
        assert counts["cached"] > 0 and counts["degraded"] > 0
        empty, zero = [], []
        for title, legend, expr in _panel_queries():
            result = query(expr)
            if not result:
                empty.append(f"{title} / {legend}: {expr}")
                continue
            values = [float(s["value"][1]) for s in result]
            if legend in MUST_BE_POSITIVE and not any(math.isfinite(v) and v > 0 for v in values):
                zero.append(f"{title} / {legend}: {values}")
        assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
        assert not zero, "dashboard queries without a positive value after traffic:\n" + "\n".join(zero)
        degraded = query(f"sum(increase(recranker_degraded_responses_total[{RATE_WINDOW}]))")
        assert float(degraded[0]["value"][1]) > 0
        # the alerting rules load and evaluate in this Prometheus too
        groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert {r["name"] for r in rules} == {"RecRankerRankLatencyP95High", "RecRankerDegradedAnswersHigh",
                                              "RecRankerRedisErrors"}
        wait_until(lambda: all(r.get("health") == "ok" for g in httpx.get(f"{api}/rules", timeout=5).json()["data"]
                               ["groups"] for r in g["rules"]), 10, "rules evaluated", prom, log)
    finally:
        stop(prom)
        stop(service)
