"""Real clients against the service, unchanged: the official ``cohere`` SDK (Client -> /v1/rerank,
ClientV2 -> /v2/rerank) over the app in-process, and TEI-shaped requests and answers checked
against text-embeddings-inference's published API.

The SDK gets the started TestClient as its ``httpx_client`` (TestClient is an httpx.Client
that calls the ASGI app directly): the SDK's own request building, headers, status ->
exception mapping and response parsing all run; nothing leaves the process.
"""

from __future__ import annotations

import math

import cohere
import jsonschema
import pytest
from cohere.core.api_error import ApiError

from service.relevance import evidence_weight, relevance_score
from tests.service.conftest import new_user

# the SDK passes its timeout per request; TestClient warns that it ignores it (nothing to time out in-process)
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

KEY = "s3cret"
CHEAP = {"additional_body_parameters": {"modes": ["pointwise"]}}  # one LLM mode keeps these tests quick

# ---- TEI's API, transcribed ------------------------------------------------------------------
# From huggingface/text-embeddings-inference docs/openapi.json (v1.7.1), components.schemas
# RerankRequest, Rank, RerankResponse, ErrorResponse, ErrorType, TruncationDirection; OpenAPI
# 3.0 "nullable" written as a JSON Schema type list. TEI's server (router/src/http/server.rs)
# serialises TruncationDirection and ErrorType as the enum's names, and newer releases add
# ErrorType "Empty" (HTTP 400) for an empty `texts`. additionalProperties is false here (not in
# TEI's schema) to check that the service adds nothing a strict TEI client would not expect.
TEI_RERANK_REQUEST = {
    "type": "object",
    "required": ["query", "texts"],
    "properties": {
        "query": {"type": "string"},
        "raw_scores": {"type": "boolean", "default": False},
        "return_text": {"type": "boolean", "default": False},
        "texts": {"type": "array", "items": {"type": "string"}},
        "truncate": {"type": ["boolean", "null"], "default": False},
        "truncation_direction": {"enum": ["Left", "Right", "left", "right"], "default": "right"},
    },
}
TEI_RANK = {
    "type": "object",
    "required": ["index", "score"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "score": {"type": "number"},
        "text": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}
TEI_RERANK_RESPONSE = {"type": "array", "items": TEI_RANK}
TEI_ERROR = {
    "type": "object",
    "required": ["error", "error_type"],
    "properties": {
        "error": {"type": "string"},
        "error_type": {"enum": ["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]},
    },
    "additionalProperties": False,
}
# TEI's documented example request (the schema's own examples), for the request schema above
TEI_DOC_EXAMPLE = {"query": "What is Deep Learning?", "texts": ["Deep Learning is ..."], "raw_scores": False,
                   "return_text": False, "truncate": False, "truncation_direction": "right"}


def _expected(client, user: str, candidates: list, modes: list[str]) -> list[dict]:
    """The rank pipeline's own answer for the same user and items: the order rerank must keep."""
    r = client.post("/v1/rank", json={"user_id": user, "candidates": candidates, "k": len(candidates),
                                      "modes": modes}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _weight(resources, modes) -> float:
    return evidence_weight(resources.ranker.weights, modes, degraded=False)


def test_cohere_client_v1_rerank(make_client, resources):
    client = make_client(api_key=KEY)
    co = cohere.Client(api_key=KEY, base_url=str(client.base_url), httpx_client=client, max_retries=0)
    docs = ["50", "181", "172"]  # Star Wars, Return of the Jedi, The Empire Strikes Back
    resp = co.rerank(model="recranker", query="5", documents=docs, top_n=2, return_documents=True,
                     request_options=CHEAP)
    assert isinstance(resp, cohere.RerankResponse)
    expected = _expected(client, "5", docs, ["pointwise"])
    assert [docs[r.index] for r in resp.results] == [it["item_id"] for it in expected[:2]]
    w = _weight(resources, ["pointwise"])
    for r, it in zip(resp.results, expected, strict=False):
        assert 0.0 <= r.relevance_score <= 1.0 and math.isfinite(r.relevance_score)
        assert r.hybrid_score == pytest.approx(it["score"])  # the raw hybrid, under its own name
        assert r.relevance_score == pytest.approx(relevance_score(it["score"], w))
        assert r.document.text == it["title"]
    assert resp.results[0].relevance_score >= resp.results[1].relevance_score
    assert resp.meta.api_version.version == "1" and resp.id


def test_cohere_client_v2_rerank_all_modes(make_client, resources):
    """ClientV2 posts to /v2/rerank with plain string documents; here with every mode (the default)."""
    client = make_client(api_key=KEY)
    co = cohere.ClientV2(api_key=KEY, base_url=str(client.base_url), httpx_client=client, max_retries=0)
    docs = ["50", "Oppenheimer (2023)", "181"]  # the middle one is not in the catalog: ranked by its title
    resp = co.rerank(model="recranker", query="7", documents=docs, top_n=3)
    assert isinstance(resp, cohere.V2RerankResponse)
    expected = _expected(client, "7", ["50", {"item_id": "doc-1", "title": "Oppenheimer (2023)"}, "181"],
                         ["pointwise", "pairwise", "listwise"])
    ids = ["50", "doc-1", "181"]
    assert [ids[r.index] for r in resp.results] == [it["item_id"] for it in expected]
    scores = [r.relevance_score for r in resp.results]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    w = _weight(resources, ["pointwise", "pairwise", "listwise"])
    assert scores == pytest.approx([relevance_score(it["score"], w) for it in expected])
    assert resp.meta.api_version.version == "2" and resp.meta.tokens.input_tokens >= 0


def test_cohere_v2_document_objects_and_return_documents(make_client):
    """Older v2 clients send {"text": ...} objects and return_documents: both are accepted."""
    client = make_client()
    body = {"model": "m", "query": "5", "documents": [{"text": "Barbie (2023)"}, "50"], "return_documents": True,
            "max_tokens_per_doc": 512, "priority": 0, "relevant_spans": {"mode": "disabled"}, "modes": ["pointwise"]}
    r = client.post("/v2/rerank", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(x["index"] for x in results) == [0, 1]
    texts = {x["index"]: x["document"]["text"] for x in results}
    assert texts == {0: "Barbie (2023)", 1: "Star Wars (1977)"}


def test_cohere_sdk_errors_raise_its_exceptions_with_a_message(make_client):
    client = make_client(api_key=KEY)
    co = cohere.ClientV2(api_key=KEY, base_url=str(client.base_url), httpx_client=client, max_retries=0)
    user = new_user()
    with pytest.raises(cohere.NotFoundError) as e:
        co.rerank(model="m", query=user, documents=["50"])
    assert user in e.value.body["message"]
    with pytest.raises(cohere.BadRequestError) as e:
        co.rerank(model="m", query="1", documents=["50", "50"])
    assert "'50' appears more than once" in e.value.body["message"]
    with pytest.raises(cohere.BadRequestError) as e:
        co.rerank(model="m", query="1", documents=[str(i) for i in range(1, 7)])
    assert e.value.body["message"] == "documents: 6 given, the limit is 5"
    with pytest.raises(cohere.BadRequestError) as e:
        co.rerank(model="m", query="1", documents=["50"], relevant_spans=cohere.RerankRelevantSpans(mode="enabled"))
    assert e.value.body["message"].startswith("relevant_spans: relevant spans are not supported")
    with pytest.raises(cohere.BadRequestError) as e:
        co.rerank(model="m", query="1", documents=[], request_options=CHEAP)
    assert e.value.body["message"].startswith("documents: ")
    v1 = cohere.Client(api_key=KEY, base_url=str(client.base_url), httpx_client=client, max_retries=0)
    with pytest.raises(cohere.BadRequestError) as e:
        v1.rerank(query="1", documents=[{"text": "Dune (2021)", "author": "x"}])
    assert e.value.body["message"] == "documents[0].author: unknown field"
    with pytest.raises(cohere.BadRequestError) as e:
        v1.rerank(query="1", documents=["50"], rank_fields=["author"])
    assert "cannot rank on ['author']" in e.value.body["message"]
    wrong = cohere.ClientV2(api_key="wrong", base_url=str(client.base_url), httpx_client=client, max_retries=0)
    with pytest.raises(cohere.UnauthorizedError) as e:
        wrong.rerank(model="m", query="1", documents=["50"])
    assert e.value.body == {"message": "invalid API key"}
    assert isinstance(e.value, ApiError) and e.value.status_code == 401


def test_cohere_shape_errors_on_the_wire(make_client):
    client = make_client(max_body_bytes=2048)
    for path in ("/v1/rerank", "/v2/rerank"):
        r = client.post(path, json={"query": "1", "documents": ["50"], "top_n": 0})
        assert r.status_code == 400 and r.json() == {"message": "top_n: Input should be greater than or equal to 1"}
        r = client.post(path, json={"query": "1", "documents": ["x" * 100] * 30})
        assert r.status_code == 413 and set(r.json()) == {"message"} and "limit is 2048 bytes" in r.json()["message"]
    r = client.post("/v1/rank", json={"user_id": "1", "k": 0})  # the service's own routes keep {"detail"}, 422
    assert r.status_code == 422 and set(r.json()) == {"detail"}


def test_tei_rerank_request_and_response_match_teis_api(make_client, resources):
    client = make_client(api_key=KEY)
    jsonschema.validate(TEI_DOC_EXAMPLE, TEI_RERANK_REQUEST)  # the transcription accepts TEI's own example
    texts = ["50", "Oppenheimer (2023)", "172"]
    request = {"query": "9", "texts": texts, "raw_scores": False, "return_text": True, "truncate": False,
               "truncation_direction": "right"}
    jsonschema.validate(request, TEI_RERANK_REQUEST)
    headers = {"Authorization": f"Bearer {KEY}"}  # TEI clients' header
    # modes is RecRanker's own field; a TEI client that omits it gets every mode
    r = client.post("/rerank", json={**request, "modes": ["pointwise"]}, headers=headers)
    assert r.status_code == 200, r.text
    ranks = r.json()
    jsonschema.validate(ranks, TEI_RERANK_RESPONSE)
    assert sorted(x["index"] for x in ranks) == [0, 1, 2]
    assert all(x["text"] == texts[x["index"]] for x in ranks)  # the text as sent
    scores = [x["score"] for x in ranks]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)

    raw = client.post("/rerank", json={"query": "9", "texts": texts, "raw_scores": True, "modes": ["pointwise"]},
                      headers=headers)
    assert raw.status_code == 200, raw.text
    raw_ranks = raw.json()
    jsonschema.validate(raw_ranks, TEI_RERANK_RESPONSE)
    assert all("text" not in x for x in raw_ranks)  # return_text false: no text field, as TEI
    expected = _expected(client, "9", ["50", {"item_id": "doc-1", "title": "Oppenheimer (2023)"}, "172"],
                         ["pointwise"])
    ids = ["50", "doc-1", "172"]
    assert [ids[x["index"]] for x in raw_ranks] == [it["item_id"] for it in expected]
    assert [x["score"] for x in raw_ranks] == pytest.approx([it["score"] for it in expected])  # raw hybrid
    assert [x["index"] for x in raw_ranks] == [x["index"] for x in ranks]  # same order either way
    w = _weight(resources, ["pointwise"])
    assert scores == pytest.approx([relevance_score(x["score"], w) for x in raw_ranks])


def test_tei_errors_have_teis_shape_and_statuses(make_client):
    client = make_client(api_key=KEY, max_body_bytes=4096)
    auth = {"Authorization": f"Bearer {KEY}"}

    def check(r, status: int, error_type: str) -> str:
        assert r.status_code == status, (r.status_code, r.text)
        body = r.json()
        jsonschema.validate(body, TEI_ERROR)
        assert body["error_type"] == error_type, body
        return body["error"]

    assert check(client.post("/rerank", json={"query": "1", "texts": []}, headers=auth), 400, "Empty") == \
        "`texts` cannot be empty"
    msg = check(client.post("/rerank", json={"query": "1", "texts": [str(i) for i in range(1, 7)]}, headers=auth),
                413, "Validation")
    assert msg == "texts: 6 given, the limit is 5"
    assert check(client.post("/rerank", json={"query": "1", "texts": "50"}, headers=auth), 422,
                 "Validation").startswith("texts: ")
    assert check(client.post("/rerank", json={"query": "1", "texts": ["50"], "top_n": 1}, headers=auth), 422,
                 "Validation") == "top_n: unknown field"
    user = new_user()
    assert user in check(client.post("/rerank", json={"query": user, "texts": ["50"]}, headers=auth), 404, "Validation")
    assert check(client.post("/rerank", json={"query": "1", "texts": ["50"]}), 401, "Validation").startswith(
        "missing API key")
    assert "limit is 4096 bytes" in check(
        client.post("/rerank", json={"query": "1", "texts": ["x" * 200] * 30}, headers=auth), 413, "Validation")


def test_openapi_lists_the_client_routes_with_their_error_shapes(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        assert path in paths, path
    v2 = paths["/v2/rerank"]["post"]["responses"]
    assert v2["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/CohereErrorOut")
    tei = paths["/rerank"]["post"]["responses"]
    assert tei["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/TeiErrorOut")
    assert {"BearerAuth", "HTTPBearer"} & set(spec["components"]["securitySchemes"])
