"""Each error shape's status and body, including the statuses the HTTP tests cannot reach cheaply
(a full queue, an internal error)."""

from __future__ import annotations

from types import SimpleNamespace

from service.error_shapes import Problem, cohere_shape, plain_shape, render, shape_for, tei_shape


def test_plain_shape_is_the_services_own():
    assert plain_shape(Problem(422, "k: bad", "invalid")) == (422, {"detail": "k: bad"})


def test_cohere_shape_turns_invalid_requests_into_400_and_keeps_other_statuses():
    assert cohere_shape(Problem(422, "top_n: bad", "invalid")) == (400, {"message": "top_n: bad"})
    assert cohere_shape(Problem(422, "documents: 6 given", "too_many")) == (400, {"message": "documents: 6 given"})
    for status in (401, 404, 413, 500, 503):
        assert cohere_shape(Problem(status, "x")) == (status, {"message": "x"})


def test_tei_shape_uses_teis_error_types_and_their_statuses():
    assert tei_shape(Problem(400, "`texts` cannot be empty", "empty")) == (
        400, {"error": "`texts` cannot be empty", "error_type": "Empty"})
    assert tei_shape(Problem(422, "texts: 40 given", "too_many"))[0] == 413
    assert tei_shape(Problem(503, "queue is full", "overloaded")) == (
        429, {"error": "queue is full", "error_type": "Overloaded"})
    assert tei_shape(Problem(503, "starting", "unavailable")) == (503, {"error": "starting", "error_type": "Unhealthy"})
    assert tei_shape(Problem(500, "internal error", "internal")) == (
        500, {"error": "internal error", "error_type": "Backend"})
    assert tei_shape(Problem(404, "unknown user", "not_found")) == (
        404, {"error": "unknown user", "error_type": "Validation"})


def test_shape_is_chosen_by_route_path_and_keeps_retry_after_where_it_means_something():
    app = SimpleNamespace(state=SimpleNamespace(error_shapes={"/rerank": tei_shape, "/v2/rerank": cohere_shape}))
    assert shape_for({"app": app, "path": "/rerank"}) is tei_shape
    assert shape_for({"app": app, "path": "/x", "route": SimpleNamespace(path="/v2/rerank")}) is cohere_shape
    assert shape_for({"app": app, "path": "/v1/rank"}) is plain_shape
    assert shape_for({"path": "/rerank"}) is plain_shape  # no app state (yet): the service's own shape
    full = render({"app": app, "path": "/rerank"}, Problem(503, "queue is full", "overloaded", {"Retry-After": "1"}))
    assert full.status_code == 429 and full.headers["retry-after"] == "1"
