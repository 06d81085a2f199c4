"""`/docs` loads nothing from another origin, and what it loads is served here."""

from __future__ import annotations

import re

import httpx

from tests.api.test_security_headers import FRAME_ANCESTORS, assert_security_headers

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


async def test_docs_references_only_same_origin_assets_that_are_served(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
    assert urls, response.text
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "url: '/openapi.json'" in response.text
    assert not re.search(r"https?://", response.text)
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"].startswith(ASSET_TYPES[suffix]), url
        assert_security_headers(asset)
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts and b"SwaggerUIBundle" in (await client.get(scripts[0])).content


async def test_docs_policy_allows_this_origin_only(client: httpx.AsyncClient) -> None:
    policy = assert_security_headers(await client.get("/docs"))
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and FRAME_ANCESTORS in policy
    for name, sources in directives.items():
        assert "http" not in sources and "*" not in sources, name
    script = directives["script-src"].split()
    assert script[0] == "'self'" and all(s.startswith("'sha256-") for s in script[1:])


async def test_redoc_is_not_served(client: httpx.AsyncClient) -> None:
    # It would load its script from a CDN: /docs is the one API browser.
    assert (await client.get("/redoc")).status_code == 404
