"""/docs and /redoc work without internet: every script and stylesheet their pages load
comes from the app itself (the fastapi-offline wheel's files), none from a CDN.

The app is built without starting its lifespan (no model, no Redis): the docs pages and
their assets do not depend on either. Requests go through Starlette's in-process test
transport, so no socket is opened at all.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from stack.settings import Settings
from service.main import create_app

ASSET = re.compile(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""")
EXTERNAL = re.compile(r"[a-z]+://[^\s'\"]+")


@pytest.fixture(scope="module")
def docs_client() -> TestClient:
    return TestClient(create_app(Settings(_env_file=None, redis_url=None)))


def _assets(html: str) -> list[str]:
    return ASSET.findall(html)


@pytest.mark.parametrize("page, kinds", [("/docs", {".js", ".css"}), ("/redoc", {".js"})])
def test_docs_page_and_every_asset_come_from_the_app(docs_client: TestClient, page: str, kinds: set[str]) -> None:
    r = docs_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not EXTERNAL.findall(html), f"{page} refers to another host: {EXTERNAL.findall(html)}"
    assets = [a for a in _assets(html) if a.endswith((".js", ".css"))]
    assert {a[a.rindex("."):] for a in assets} == kinds, assets
    for url in assets:
        got = docs_client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 50_000, f"{url}: {len(got.content)} bytes, not a UI bundle"
        expected = "javascript" if url.endswith(".js") else "css"
        assert expected in got.headers["content-type"], (url, got.headers["content-type"])
    # the page then loads the OpenAPI document from the app as well
    assert '"/openapi.json"' in html or "'/openapi.json'" in html
    spec = docs_client.get("/openapi.json")
    assert spec.status_code == 200 and "/v1/rank" in spec.json()["paths"]


def test_swagger_ui_asks_no_validator_service(docs_client: TestClient) -> None:
    html = docs_client.get("/docs").text
    assert '"validatorUrl": null' in html
