"""The deployment files: the monitoring stack refers to metrics the service really exports,
every file parses, and docker-compose.yml validates under both profiles with the real
`docker-compose config` (Debian's docker-compose; .ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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


@pytest.mark.parametrize("doc", ["docs/service.md", "README.md", "deploy/prometheus/alerts.yml"])
def test_docs_and_alerts_name_only_exported_metrics(doc):
    families = _exported_families()
    named = {_base(n, families) for n in re.findall(r"recranker_[a-z_]+[a-z]", (REPO / doc).read_text())}
    named = {n for n in named if not n.startswith("recranker_smollm2")}  # the adapter's folder name
    assert named <= families, f"{doc} names metrics the service does not export: {sorted(named - families)}"
    if doc == "docs/service.md":  # the metrics table describes every family (the client's *_created aside)
        described = {f for f in families if not f.endswith("_created")}
        assert named == described, f"{doc} does not describe: {sorted(described - named)}"


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


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/prometheus/prometheus.yml",
                                  "deploy/prometheus/alerts.yml", "deploy/prometheus/alerts.test.yml",
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
    assert {"recranker", "recranker-gpu", "vllm", "proxy", "redis", "prometheus", "grafana"} <= set(services)
    for name in ("recranker", "recranker-gpu"):
        assert services[name]["environment"]["RECRANKER_REDIS_URL"].startswith("redis://redis:")
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    # DNS discovery, not a static target: every replica is scraped, not one picked by DNS
    assert job["dns_sd_configs"] == [{"names": ["recranker"], "type": "A", "port": 8080, "refresh_interval": "15s"}]
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    dash = json.loads(DASHBOARD.read_text())
    assert all(p["datasource"]["uid"] == uid for p in dash["panels"])


# --- docker-compose config, per profile ---------------------------------------------------

PROFILES = {
    "cpu": {"recranker", "proxy", "redis", "prometheus", "grafana"},
    "gpu": {"recranker-gpu", "model-init", "vllm", "proxy", "redis", "prometheus", "grafana"},
}


def _compose_config(profile: str) -> dict:
    """`docker-compose --profile X config`: validates the file against the Compose schema
    and resolves anchors and ${VAR:-default}s; returns the resolved document."""
    yaml = pytest.importorskip("yaml")
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose; .ci/run does this)")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(REPO)}  # no user's COMPOSE_*/RECRANKER_* leak in
    out = subprocess.run([exe, "-f", "docker-compose.yml", "--profile", profile, "config"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"docker-compose --profile {profile} config failed:\n{out.stderr}"
    return yaml.safe_load(out.stdout)


def _active(services: dict, profile: str) -> set[str]:
    # docker-compose 1.29's `config` prints every service; which run is decided by `profiles`
    return {name for name, svc in services.items() if not svc.get("profiles") or profile in svc["profiles"]}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_compose_profile_validates_and_is_self_contained(profile: str) -> None:
    services = _compose_config(profile)["services"]
    active = _active(services, profile)
    assert active == PROFILES[profile]
    for name in active:  # nothing waits for a service this profile does not start
        deps = services[name].get("depends_on") or {}
        assert set(deps) <= active, (name, set(deps) - active)
    # one API under the name the proxy and Prometheus use; its port on the host is the proxy's
    api = "recranker" if profile == "cpu" else "recranker-gpu"
    assert "ports" not in services[api], "replicas must not bind a host port (use the proxy)"
    assert "healthcheck" in services[api] and "/readyz" in " ".join(services[api]["healthcheck"]["test"])
    if profile == "gpu":
        assert services[api]["networks"]["default"]["aliases"] == ["recranker"]
    assert [p["published"] if isinstance(p, dict) else p for p in services["proxy"]["ports"]] in (
        [8080], ["8080"], ["127.0.0.1:8080:8080/tcp"], ["127.0.0.1:8080:8080"])
    conf = (REPO / "deploy/nginx/recranker.conf").read_text()
    assert "http://recranker:8080" in conf and "resolver 127.0.0.11" in conf


def _flag(args: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in a command list."""
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name:
            return args[i + 1]
    raise AssertionError(f"{name} not in {args}")


def test_gpu_profile_serves_the_base_model_and_the_adapter_through_vllm() -> None:
    from ranker.model import BUNDLED_MODEL

    services = _compose_config("gpu")["services"]
    vllm, api, init = services["vllm"], services["recranker-gpu"], services["model-init"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    cmd = [str(c) for c in vllm["command"]]
    assert "--enable-lora" in cmd
    # --lora-modules NAME=PATH (vLLM docs, features/lora.md): requests with "model": NAME use it
    name, path = _flag(cmd, "--lora-modules").split("=", 1)
    env = api["environment"]
    assert env["RECRANKER_ENGINE"] == "vllm"
    # the service sends its adapter's folder name as the model (ranker/engines/vllm.py), and
    # the base model's served name when it serves no adapter
    assert name == Path(path).name, "the LoRA module name must be the adapter's folder name"
    assert env["RECRANKER_VLLM_MODEL"] == _flag(cmd, "--served-model-name")
    assert env["RECRANKER_VLLM_URL"] == f"http://vllm:{_flag(cmd, '--port')}"
    # the adapter reaches the container through a read-only mount of the repo's models/
    mounts = {m.split(":")[1]: m.split(":")[0] for m in vllm["volumes"]}
    mount_point = next(m for m in mounts if path.startswith(m + "/"))
    host_adapter = Path(mounts[mount_point]) / path.removeprefix(mount_point + "/")
    assert host_adapter == REPO / "models" / "recranker-smollm2-ml100k"
    rank = json.loads((host_adapter / "adapter_config.json").read_text())["r"]
    assert int(_flag(cmd, "--max-lora-rank")) >= rank
    # the base model is the checkpoint the service converts into RECRANKER_HOME/models,
    # shared through the recranker-home volume that model-init fills first
    home_volume = next(m.split(":")[0] for m in init["volumes"] if m.split(":")[1] == "/var/lib/recranker")
    assert any(m.startswith(f"{home_volume}:/var/lib/recranker:ro") for m in vllm["volumes"])
    assert cmd[0] == f"/var/lib/recranker/models/{BUNDLED_MODEL}"
    assert init["command"] == ["recranker", "model", "prepare"]
    assert vllm["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


# --- metric names in docs and deploy files ------------------------------------------------

MENTION_ROOTS = ("docs", "deploy", "README.md", "docker-compose.yml")
TEXT_SUFFIXES = {".md", ".json", ".yml", ".yaml", ".rules", ".txt", ".conf", ".toml"}
SERIES_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                   "gauge": (), "summary": ("_sum", "_count", "_created")}


def _served_metric_names() -> set[str]:
    """Every family and series name GET /metrics can show (families of a fresh app; series
    of an unobserved labelled metric are not listed yet, so they are derived from the type)."""
    from fastapi.testclient import TestClient

    from stack.settings import Settings
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
