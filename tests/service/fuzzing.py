"""A fuzzer for the HTTP API, driven by the app's own OpenAPI document at run time, so
every endpoint it lists is covered (new ones included) without naming them here.

Cases come from four generators, all hypothesis strategies (seeded, shrinkable):

- ``schema``: bodies valid against the request schema (hypothesis-jsonschema);
- ``realistic``: such a body with ids swapped for real catalog users and items, so many
  cases get past validation into ranking and storage;
- ``mutated``: a realistic body with one value replaced by something hostile (non-finite or
  huge numbers, wrong types, odd unicode, very long strings, deep nesting), a list item
  duplicated (duplicate ids), an unknown field added, or a key repeated;
- ``envelope``: wrong Content-Type, broken or non-UTF-8 JSON, non-object bodies, empty ones.

``check`` states what every answer must satisfy: no status >= 500; a 2xx is valid against
the operation's response schema and holds only finite numbers; a 4xx is in its route's
error shape (``{"detail"}``; Cohere's ``{"message"}``; TEI's ``{"error", "error_type"}``)
and its message names a field (``path.to[3].field: rule``) or
the body/request as a whole, and names the mutated field when a valid body was broken
in one place.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

# ---- the OpenAPI document -------------------------------------------------------------------


def resolve(schema: Any, doc: dict, depth: int = 0) -> Any:
    """The schema with every local $ref inlined (FastAPI's models are not recursive)."""
    if depth > 50:
        raise ValueError("schema nesting too deep: recursive $ref?")
    if isinstance(schema, dict):
        if "$ref" in schema:
            target: Any = doc
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target, doc, depth + 1)
        return {k: resolve(v, doc, depth + 1) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolve(v, doc, depth + 1) for v in schema]
    return schema


def _cap_sizes(schema: Any, max_items: int) -> Any:
    """Generation only: lists of at most ``max_items`` (limits are fuzzed on purpose by the
    mutations; a schema-valid 1000-item history only makes cases slow to draw)."""
    if isinstance(schema, dict):
        out = {k: _cap_sizes(v, max_items) for k, v in schema.items()}
        if out.get("type") == "array":
            out["maxItems"] = min(out.get("maxItems", max_items), max_items)
            out["minItems"] = min(out.get("minItems", 0), out["maxItems"])
        return out
    if isinstance(schema, list):
        return [_cap_sizes(v, max_items) for v in schema]
    return schema


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    body_schema: dict | None  # resolved; None when the operation takes no JSON body
    responses: dict[str, dict | None]  # status -> resolved JSON schema (None: not JSON)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def operations(doc: dict) -> list[Operation]:
    ops = []
    for path, items in doc["paths"].items():
        for method, op in items.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            responses = {}
            for status, r in op.get("responses", {}).items():
                schema = (r.get("content") or {}).get("application/json", {}).get("schema")
                responses[status] = resolve(schema, doc) if schema is not None else None
            ops.append(Operation(method.upper(), path, resolve(body, doc) if body is not None else None, responses))
    return ops


# ---- JSON with what json.dumps cannot write -------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Written verbatim: Infinity, NaN, 1e999, a 400-digit integer, a lone surrogate escape."""

    text: str


@dataclass(frozen=True)
class DupKeys:
    """An object that repeats a key (JSON allows writing it; parsers keep the last)."""

    pairs: tuple[tuple[str, Any], ...]


def dumps(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, DupKeys):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value)


# ---- cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    op: Operation
    kind: str  # schema | realistic | mutated | envelope | plain
    body: bytes | None
    content_type: str | None = "application/json"
    mutated_names: tuple[str, ...] = ()  # how a 422 may name the field a mutation changed
    base: Any = None  # the realistic body a mutation started from
    note: str = ""

    def describe(self) -> str:
        shown = (self.body or b"")[:300]
        return f"{self.op.name} [{self.kind}{' ' + self.note if self.note else ''}] ct={self.content_type} body={shown!r}"


@dataclass(frozen=True)
class Pools:
    """Real ids, so generated requests reach ranking and the store."""

    users: tuple[str, ...]
    items: tuple[str, ...]
    titles: tuple[str, ...]


def pools_of(dataset, n_users: int = 50, n_items: int = 300) -> Pools:
    return Pools(users=tuple(str(u) for u in list(dataset.user_ids)[:n_users]),
                 items=tuple(str(i) for i in list(dataset.item_ids)[:n_items]),
                 titles=tuple(dataset.titles[:n_items]))


USER_KEYS = {"user_id", "query"}
ITEM_KEYS = {"item_id", "id"}
ITEM_LIST_KEYS = {"candidates", "documents", "texts"}


def _deep_list(n: int) -> Raw:
    return Raw("[" * n + "]" * n)


def _deep_object(n: int) -> Raw:
    return Raw('{"a":' * n + "1" + "}" * n)


HOSTILE = (
    Raw("Infinity"), Raw("-Infinity"), Raw("NaN"), Raw("1e999"), Raw("-1e999"), 1.7e308, -1.7e308, 5e-324,
    2 ** 63, 2 ** 64 + 1, -(2 ** 63), 10 ** 30, Raw("1" + "0" * 400), Raw("1" + "0" * 5000), 0, -1, 1.5,
    "", " ", "\u0000", Raw('"\\ud800"'), Raw('"\\udfff\\ud800"'), "\U0001F600" * 40, "\u202eevil\u202c",
    "e\u0301" * 10, "\ufeff1", "a" * 129, "a" * 301, "x" * 10_000, "1", "50", "1.0", "true", "null",
    True, False, None, [], {}, [None], [[]], {"": None}, _deep_list(50), _deep_list(5000), _deep_object(50),
    _deep_object(5000), ["50"] * 300,
)
WRONG_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                       "application/xml", "text/json", "application/json-seq", "", "*/*")
BROKEN_BODIES = (b"", b"{", b'{"user_id": "1",', b"[]", b"[1, 2]", b"null", b"1", b'"x"', b"true",
                 b'{"user_id": "1"} trailing', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"a": "\xc3\x28"}',
                 b"{'user_id': '1'}", b"NaN", b"{" * 100_000, b"[" * 100_000, b"user_id=1&k=2")


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a JSON value (the root included)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            out += _paths(v, prefix + (n,))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def _last_key(path: tuple) -> str | None:
    keys = [p for p in path if isinstance(p, str)]
    return keys[-1] if keys else None


@st.composite
def realistic(draw, body: Any, pools: Pools) -> Any:
    """Swap generated ids for real ones (most of the time) and titles for real titles."""
    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            if key in ITEM_LIST_KEYS:
                return [draw(st.sampled_from(pools.items)) if isinstance(v, str) and draw(st.booleans())
                        else walk(v, None) for v in value]
            return [walk(v, key) for v in value]
        if isinstance(value, str) and draw(st.integers(0, 9)) < 8:
            if key in USER_KEYS:
                return draw(st.sampled_from(pools.users))
            if key in ITEM_KEYS:
                return draw(st.sampled_from(pools.items))
            if key in ("title", "text"):
                return draw(st.sampled_from(pools.titles))
        return value
    return walk(body, None)


@st.composite
def mutation(draw, body: Any) -> tuple[Any, tuple[str, ...], str]:
    """(mutated body, names of the field it changed, what was done)."""
    paths = _paths(body)
    path = draw(st.sampled_from(paths))
    target = _get(body, path)
    choices = ["hostile", "hostile", "hostile", "text", "number"]
    if isinstance(target, list) and target:
        choices += ["duplicate", "duplicate"]
    if isinstance(target, dict):
        choices += ["extra", "dupkey"]
    how = draw(st.sampled_from(choices))
    key = _last_key(path)
    if how == "hostile":
        new = draw(st.sampled_from(HOSTILE))
    elif how == "text":
        new = draw(st.text(max_size=200))
    elif how == "number":
        new = draw(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True)))
    elif how == "duplicate":
        n = draw(st.integers(0, len(target) - 1))
        new = target + [target[n]]
    elif how == "extra":
        name = draw(st.sampled_from(["unknown", "candidate", "Weights", "__proto__", "user_id ", ""]))
        if name in target:
            return body, (), "noop"
        new = {**target, name: 1}
        key = name or key
    else:  # dupkey: the same key twice, the second value hostile
        if not target:
            return body, (), "noop"
        k = draw(st.sampled_from(sorted(target)))
        new = DupKeys(tuple(target.items()) + ((k, draw(st.sampled_from(HOSTILE))),))
        key = k
    return _replace(body, path, new), _names(path, key), f"{how}@{'/'.join(map(str, path)) or 'root'}"


def _display(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _names(path: tuple, key: str | None) -> tuple[str, ...]:
    """Ways a message may name a mutated location: its key, or its enclosing list element
    ("events[0]" for events[0].item_id)."""
    names = [key] if key else []
    cut = max((n for n, p in enumerate(path) if isinstance(p, int)), default=-1)
    if cut >= 0:
        names.append(_display(path[: cut + 1]))
    return tuple(n for n in names if n and n.strip())


def cases(op: Operation, pools: Pools, max_items: int = 6) -> st.SearchStrategy[Case]:
    """Cases for one operation (schema strategy built once: from_schema is costly)."""
    if op.body_schema is None:
        return st.just(Case(op, "plain", None, None))
    valid = from_schema(_cap_sizes(op.body_schema, max_items))

    @st.composite
    def one(draw) -> Case:
        kind = draw(st.sampled_from(["schema", "realistic", "realistic", "mutated", "mutated", "mutated", "envelope"]))
        if kind == "envelope":
            if draw(st.booleans()):
                body = dumps(draw(realistic(draw(valid), pools))).encode()
                return Case(op, kind, body, draw(st.sampled_from(WRONG_CONTENT_TYPES)), note="content-type")
            return Case(op, kind, draw(st.sampled_from(BROKEN_BODIES)), "application/json", note="broken body")
        body = draw(valid)
        if kind == "schema":
            return Case(op, kind, dumps(body).encode())
        body = draw(realistic(body, pools))
        if kind == "realistic":
            return Case(op, kind, dumps(body).encode())
        mutated, names, note = draw(mutation(body))
        return Case(op, kind, dumps(mutated).encode(), mutated_names=names, base=body, note=note)

    return one()


# ---- sending and checking -------------------------------------------------------------------


def send(client: httpx.Client, case: Case, api_key: str | None = None) -> httpx.Response:
    headers = {}
    if case.content_type is not None:
        headers["content-type"] = case.content_type
    if api_key:
        headers["x-api-key"] = api_key
    return client.request(case.op.method, case.op.path, content=case.body, headers=headers)


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-finite number {token} in a response")


def _strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


BODY_MESSAGES = ("request body", "unsupported Content-Type", "unknown user", "missing X-API-Key", "invalid X-API-Key",
                 "ranking queue is full", "user store unavailable", "service is starting")


def _message_ok(part: str) -> bool:
    if part.startswith(BODY_MESSAGES):
        return True
    # "field: rule", or TEI's own wording "`field` rule" on its route
    m = re.match(r"^(?P<field>[^:]+): (?P<rule>.+)$", part, re.S) or re.match(r"^`(?P<field>\w+)` (?P<rule>.+)$", part)
    return bool(m) and len(m["rule"].split()) >= 2 and m["rule"].strip().lower() not in ("invalid", "value error")


def check(case: Case, r: httpx.Response) -> list[str]:
    """What is wrong with the answer to a case ([] = nothing)."""
    problems = []
    if r.status_code >= 500:
        problems.append(f"status {r.status_code}: {r.text[:300]}")
        return problems
    status = str(r.status_code)
    if 200 <= r.status_code < 300:
        schema = case.op.responses.get(status, "undocumented")
        if schema == "undocumented":
            return [f"status {status} is not documented for {case.op.name}"]
        if schema is None:  # not JSON (e.g. /metrics)
            return problems
        try:
            body = _strict_json(r.text)
        except ValueError as e:
            return [f"2xx body is not strict JSON: {e}: {r.text[:200]}"]
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path))
        if errors:
            problems.append(f"2xx violates the response schema at {list(errors[0].path)}: {errors[0].message}")
        if _non_finite(body):
            problems.append("2xx holds a non-finite number")
        return problems
    if 400 <= r.status_code < 500:
        try:
            body = _strict_json(r.text)
        except ValueError as e:
            return [f"{status} body is not JSON: {e}: {r.text[:200]}"]
        shape = next((keys for keys in ERROR_SHAPES if isinstance(body, dict) and set(body) == keys), None)
        key = None if shape is None else ("detail" if "detail" in shape else "message" if "message" in shape else "error")
        if key is None or not isinstance(body[key], str) or not body[key].strip():
            return [f"{status} body is none of the error shapes {[sorted(k) for k in ERROR_SHAPES]}: {r.text[:200]}"]
        detail = body[key]
        first = detail.split("; ", 1)[0]  # later parts may be other errors, or advice
        if not _message_ok(first):
            problems.append(f"{status} message does not start by naming a field and a rule: {detail[:200]!r}")
        # the Cohere-shaped routes answer an invalid request 400 (Cohere's status), the others 422
        invalid = r.status_code == 422 or (r.status_code == 400 and key == "message")
        if (invalid and case.mutated_names and case.base_ok  # type: ignore[attr-defined]
                and not detail.startswith("request body")  # unparsable: no field to name yet
                and not any(n in detail for n in case.mutated_names)):
            problems.append(f"{status} after mutating {case.mutated_names[0]!r} does not name it: {detail[:200]!r}")
    return problems


ERROR_SHAPES = ({"detail"}, {"message"}, {"error", "error_type"})  # service, Cohere, TEI routes


@dataclass
class Tally:
    """What a fuzz run saw."""

    cases: int = 0
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_op: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    closed_connections: int = 0
    send_s: float = 0.0  # seconds spent in requests (the rest of a run is generating cases)
    skipped: int = 0  # drawn after the deadline, not sent

    def as_dict(self) -> dict:
        return {"cases": self.cases, "requests": self.requests,
                "statuses": dict(sorted((str(k), v) for k, v in self.by_status.items())),
                "by_endpoint": dict(sorted(self.by_op.items())), "by_kind": dict(sorted(self.by_kind.items())),
                "status_ge_500": sum(v for k, v in self.by_status.items() if k >= 500),
                "problems": len(self.problems), "first_problems": self.problems[:20],
                "connection_close_answers": self.closed_connections, "request_seconds": round(self.send_s, 1),
                "skipped_after_deadline": self.skipped}


def run_case(client: httpx.Client, case: Case, tally: Tally, api_key: str | None = None,
             on_problem: Callable[[str], None] | None = None) -> list[str]:
    """Send a case (after its unmutated base, so a mutation's 422 can be judged), check the
    answer and that /healthz still answers; record everything in ``tally``."""
    t0 = time.perf_counter()
    case.base_ok = False  # type: ignore[attr-defined]
    if case.base is not None:
        base = Case(case.op, "realistic", dumps(case.base).encode())
        rb = send(client, base, api_key)
        tally.requests += 1
        tally.by_status[rb.status_code] += 1
        problems = [f"base of {case.describe()}: {p}" for p in check(base, rb)]
        case.base_ok = 200 <= rb.status_code < 300  # type: ignore[attr-defined]
    else:
        problems = []
    r = send(client, case, api_key)
    tally.cases += 1
    tally.requests += 1
    tally.by_status[r.status_code] += 1
    tally.by_op[case.op.name] += 1
    tally.by_kind[case.kind] += 1
    if r.headers.get("connection", "").lower() == "close":
        tally.closed_connections += 1
    problems += [f"{case.describe()}: {p}" for p in check(case, r)]
    health = client.get("/healthz")
    tally.requests += 1
    if health.status_code != 200 or health.json() != {"status": "ok"}:
        problems.append(f"/healthz answered {health.status_code} after {case.describe()}")
    tally.send_s += time.perf_counter() - t0
    tally.problems += problems
    if on_problem:
        for p in problems:
            on_problem(p)
    return problems


def fuzz(client: httpx.Client, ops: list[Operation], pool: Pools, n_cases: int, seed_: int,
         api_key: str | None = None, deadline: float | None = None,
         on_problem: Callable[[str], None] | None = None) -> Tally:
    """``n_cases`` cases spread over the operations (those without a body get a few: their
    only input is the request line), each operation its own seeded hypothesis run. Past
    ``deadline`` (time.monotonic()) cases are drawn but no longer sent: the run ends soon."""
    tally = Tally()
    body_ops = [o for o in ops if o.body_schema is not None]
    per_op = max(1, (n_cases - 3 * (len(ops) - len(body_ops))) // max(1, len(body_ops)))
    for n, op in enumerate(ops):
        @seed(seed_ + n)
        @settings(max_examples=per_op if op.body_schema is not None else 3, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases(op, pool))
        def run(case):
            if deadline is not None and time.monotonic() > deadline:
                tally.skipped += 1
                return
            run_case(client, case, tally, api_key, on_problem)  # problems are collected, not raised: no shrinking

        run()
    return tally
