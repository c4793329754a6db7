"""Happy paths over HTTP with the real model and the real Redis."""

from __future__ import annotations

from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import new_user

ALL_MODES = ["pointwise", "pairwise", "listwise"]


def _metrics(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _value(metrics, name, **labels) -> float:
    return sum(v for (n, ls), v in metrics.items() if n == name and all((k, w) in ls for k, w in labels.items()))


def _seen_by(resources, user_id: str) -> set[str]:
    ds = resources.dataset
    return {ds.item_ids[e.item] for e in resources.split.users[ds.user_index[user_id]].events}


def test_rank_retrieves_unseen_items_and_ranks_them_with_every_mode(client, resources):
    r = client.post("/v1/rank", json={"user_id": "1", "k": 2, "num_candidates": 3, "modes": ALL_MODES})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == "1" and body["degraded"] is False and body["cached"] is False
    assert body["model"] == resources.engine.model_name and body["adapter"] is None and body["backbone"] == "pop"
    items = body["items"]
    assert len(items) == 2
    assert not {it["item_id"] for it in items} & _seen_by(resources, "1")  # never re-recommend
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
    for it in items:
        assert it["title"] == resources.dataset.titles[resources.dataset.item_index[it["item_id"]]]
        assert set(it["mode_scores"]) == set(ALL_MODES)
        assert it["backbone_score"] is not None
    assert body["llm_calls"] > 0 and body["llm_tokens"] > 0
    assert set(body["label_mass"]) == set(ALL_MODES)
    t = body["timings"]
    assert t["llm"] > 0 and t["total"] >= t["llm"] and t["retrieve"] > 0


def test_rank_given_candidates_including_an_item_the_backbone_never_saw(client):
    cands = ["50", {"item_id": "new-1", "title": "Dune: Part Two (2024)"}, 181]
    r = client.post("/v1/rank", json={"user_id": "2", "candidates": cands, "k": 3, "modes": ["pointwise"]})
    assert r.status_code == 200, r.text
    items = {it["item_id"]: it for it in r.json()["items"]}
    assert set(items) == {"50", "new-1", "181"}
    assert items["new-1"]["backbone_score"] is None
    assert items["new-1"]["title"] == "Dune: Part Two (2024)"
    assert items["50"]["backbone_score"] is not None and items["50"]["title"] == "Star Wars (1977)"
    assert all(set(it["mode_scores"]) == {"pointwise"} for it in items.values())


def test_new_items_carry_client_genres_and_catalog_items_the_catalogs(client, resources):
    from service.catalog import Catalog
    from service.schemas import RankIn, to_candidates, to_history

    body = RankIn(user_id="2", candidates=["50", {"item_id": "new-1", "title": "Dune: Part Two (2024)",
                                                  "genres": ["Sci-Fi", "Adventure"]},
                                           {"item_id": "1", "title": "ignored", "genres": ["Horror"]}],
                  history=[{"item_id": "x-9", "title": "Arrival (2016)", "rating": 5, "genres": ["Sci-Fi"]}])
    catalog = Catalog(resources.dataset, resources.split, resources.generator, history_max=50)
    prepared = catalog.prepare("2", [], to_history(body.history), to_candidates(body.candidates), 3)
    genres = {c.item_id: c.genres for c in prepared.candidates}
    assert genres == {"50": ("Action", "Adventure", "Romance", "Sci-Fi", "War"), "new-1": ("Sci-Fi", "Adventure"),
                      "1": ("Animation", "Children's", "Comedy")}  # a catalog item keeps the catalog's own
    assert prepared.profile.history[0].genres == ("Sci-Fi",)
    # bounded like titles: at most 10 genres of at most 40 characters
    for bad in (["g"] * 11, ["x" * 41], [""]):
        r = client.post("/v1/rank", json={"user_id": "2", "candidates": [{"item_id": "n", "title": "T", "genres": bad}]})
        assert r.status_code == 422 and "genres" in r.text, r.text


def test_events_change_the_next_ranking_and_invalidate_the_cache(client):
    user = new_user()
    assert client.post("/v1/rank", json={"user_id": user}).status_code == 404  # nothing known yet

    r = client.post("/v1/events", json={"user_id": user, "events": [{"item_id": "50", "rating": 5},
                                                                    {"item_id": "181", "rating": 4}]})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2 and r.json()["stored"] == 2
    version = r.json()["state_version"]

    req = {"user_id": user, "k": 3, "num_candidates": 3, "modes": ["pointwise"]}
    first = client.post("/v1/rank", json=req).json()
    ids = [it["item_id"] for it in first["items"]]
    assert first["cached"] is False and len(ids) == 3 and not {"50", "181"} & set(ids)

    again = client.post("/v1/rank", json=req).json()
    assert again["cached"] is True and again["llm_calls"] == 0
    assert [it["item_id"] for it in again["items"]] == ids

    r = client.post("/v1/events", json={"user_id": user, "events": [{"item_id": ids[0], "rating": 3}]})
    assert r.json()["stored"] == 3 and r.json()["state_version"] != version
    after = client.post("/v1/rank", json=req).json()
    assert after["cached"] is False  # the user's state changed: a new key
    assert ids[0] not in {it["item_id"] for it in after["items"]}  # the new event is excluded now


def test_history_override_ranks_for_a_cold_user(client):
    r = client.post("/v1/rank", json={
        "user_id": new_user(), "k": 2, "num_candidates": 2, "modes": ["listwise"],
        "history": [{"item_id": "50", "rating": 5}, {"item_id": "x-9", "title": "Arrival (2016)", "rating": 5}]})
    assert r.status_code == 200, r.text
    ids = [it["item_id"] for it in r.json()["items"]]
    assert len(ids) == 2 and "50" not in ids


def test_batch_ranks_every_request_in_one_engine_batch(client):
    reqs = [{"user_id": "3", "modes": ["pointwise"]}, {"user_id": "4", "modes": ["pointwise", "listwise"], "k": 1}]
    r = client.post("/v1/rank/batch", json={"requests": reqs})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res["user_id"] for res in results] == ["3", "4"]
    assert len(results[0]["items"]) == 2 and len(results[1]["items"]) == 1
    assert all(not res["degraded"] and res["llm_calls"] > 0 for res in results)
    m = _metrics(client)
    assert _value(m, "recranker_batch_size_count") == 1 and _value(m, "recranker_batch_size_sum") == 2


def test_rerank_in_cohere_shape(client):
    docs = ["50", "Oppenheimer (2023)", {"id": "181"}, {"id": "x-1", "text": "Barbie (2023)"}]
    r = client.post("/v1/rerank", json={"query": "5", "documents": docs, "top_n": 3, "return_documents": True,
                                        "modes": ["pointwise"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert len({x["index"] for x in results}) == 3 and all(0 <= x["index"] < 4 for x in results)
    texts = {0: "Star Wars (1977)", 1: "Oppenheimer (2023)", 2: "Return of the Jedi (1983)", 3: "Barbie (2023)"}
    assert all(x["document"]["text"] == texts[x["index"]] for x in results)


def test_probes_and_metrics_after_traffic(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["components"]["store"] == {"ok": True, "detail": "redis reachable"}

    req = {"user_id": "6", "modes": ["pointwise"]}
    assert client.post("/v1/rank", json=req).json()["cached"] is False
    assert client.post("/v1/rank", json=req).json()["cached"] is True
    m = _metrics(client)
    assert _value(m, "recranker_request_duration_seconds_count", endpoint="/v1/rank", status="200") == 2
    assert _value(m, "recranker_request_duration_seconds_count", endpoint="/readyz") == 1
    for stage in ("retrieve", "prompt", "llm", "ensemble", "cache", "queue"):
        assert _value(m, "recranker_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert _value(m, "recranker_llm_calls_total") > 0 and _value(m, "recranker_llm_tokens_total") > 0
    assert _value(m, "recranker_label_mass_count", mode="pointwise") == 1
    assert _value(m, "recranker_cache_requests_total", result="hit") == 1
    assert _value(m, "recranker_cache_requests_total", result="miss") == 1
    assert _value(m, "recranker_cache_requests_total", result="error") == 0
    assert _value(m, "recranker_degraded_responses_total") == 0
    assert ("recranker_queue_depth", ()) in m
    # the engine's prefix cache is read at scrape time (this test engine keeps none: every lookup misses)
    assert _value(m, "recranker_prefix_cache_lookups_total", result="miss") >= 1
    assert _value(m, "recranker_prefix_cache_lookups_total", result="hit") == 0
    assert _value(m, "recranker_prefix_cache_bytes") == 0
    assert not any("user" in dict(labels) or "item" in dict(labels) for _, labels in m)  # no id labels


def test_openapi_document_is_valid_and_has_examples(client):
    spec = client.get("/openapi.json").json()
    validate(spec)
    paths = spec["paths"]
    for path in ("/v1/rank", "/v1/rank/batch", "/v1/rerank", "/v2/rerank", "/rerank", "/v1/events", "/healthz",
                 "/readyz", "/metrics"):
        assert path in paths, path
    examples = paths["/v1/rank"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {"retrieve", "candidates", "cold_start"} <= set(examples)
    assert "examples" in spec["components"]["schemas"]["RerankIn"]
    assert {"404", "422", "503"} <= set(paths["/v1/rank"]["post"]["responses"])
