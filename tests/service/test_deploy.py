"""The monitoring stack refers to metrics the service really exports, and its files parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import ServiceMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "recranker.json"
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def _exported_families() -> set[str]:
    text = ServiceMetrics().render().decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def _base(name: str, families: set[str]) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return name


def test_every_dashboard_query_uses_an_exported_metric():
    families = _exported_families()
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {_base(n, families) for e in exprs for n in re.findall(r"recranker_\w+", e)}
    assert used, "the dashboard has no recranker queries"
    assert used <= families, f"dashboard queries unknown metrics: {sorted(used - families)}"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("latency", "stage", "token", "cache", "degraded", "queue", "batch"):
        assert topic in titles, topic


def test_metric_names_follow_the_conventions():
    families = _exported_families()
    assert families and all(f.startswith("recranker_") for f in families)
    m = ServiceMetrics()
    m.llm_calls.inc()
    m.cache.labels("hit").inc()
    samples = [s for fam in text_string_to_metric_families(m.render().decode()) if fam.type == "counter"
               for s in fam.samples if not s.name.endswith("_created")]
    assert samples and all(s.name.endswith("_total") for s in samples)
    assert "recranker_request_duration_seconds" in families and "recranker_stage_duration_seconds" in families


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/prometheus.yml",
                                  "deploy/grafana/provisioning/datasources/prometheus.yml",
                                  "deploy/grafana/provisioning/dashboards/recranker.yml"])
def test_deploy_files_parse(path):
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((REPO / path).read_text())
    assert isinstance(doc, dict) and doc


def test_compose_wires_the_service_to_redis_and_prometheus_to_the_service():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"recranker", "redis", "prometheus", "grafana"} <= set(services)
    assert services["recranker"]["environment"]["RECRANKER_REDIS_URL"].startswith("redis://redis:")
    prom = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "recranker:8080" in targets
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    dash = json.loads(DASHBOARD.read_text())
    assert all(p["datasource"]["uid"] == uid for p in dash["panels"])


MENTION_ROOTS = ("docs", "deploy", "README.md", "docker-compose.yml")
TEXT_SUFFIXES = {".md", ".json", ".yml", ".yaml", ".rules", ".txt", ".conf", ".toml"}
SERIES_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                   "gauge": (), "summary": ("_sum", "_count", "_created")}


def _served_metric_names() -> set[str]:
    """Every family and series name GET /metrics can show (families of a fresh app; series
    of an unobserved labelled metric are not listed yet, so they are derived from the type)."""
    from fastapi.testclient import TestClient

    from recranker.settings import Settings
    from service.main import create_app

    app = create_app(Settings(_env_file=None, redis_url=None))
    text = TestClient(app).get("/metrics").text  # no lifespan needed: metrics exist from creation
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        names.add(name)
        names.update(name + s for s in SERIES_SUFFIXES.get(kind, ()))
    return names


def _mentions() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for root in MENTION_ROOTS:
        path = REPO / root
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            if f.suffix not in TEXT_SUFFIXES or f.stat().st_size > 2_000_000:
                continue
            for name in re.findall(r"(?<![\w-])recranker_[a-z0-9_]+", f.read_text(errors="replace")):
                found.setdefault(name, set()).add(str(f.relative_to(REPO)))
    return found


def test_every_metric_named_in_docs_and_deploy_is_exported():
    served = _served_metric_names()
    assert "recranker_cache_requests_total" in served and "recranker_store_errors_total" in served
    mentions = _mentions()
    assert mentions, "no metric names found in docs/ or deploy/"
    unknown = {name: sorted(where) for name, where in mentions.items() if name not in served}
    assert not unknown, f"named in docs/deploy but not exported by /metrics: {unknown}"
