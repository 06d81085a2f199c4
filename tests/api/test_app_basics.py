"""The API's operational routes and its error shape, over real HTTP on loopback."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import LiveServer

SEED_FAMILIES = {
    "coderd_chatd_chats",
    "coderd_chatd_message_count",
    "coderd_chatd_prompt_size_bytes",
    "coderd_chatd_tool_result_size_bytes",
    "coderd_chatd_ttft_seconds",
    "coderd_chatd_compaction",
    "coderd_chatd_steps",
    "coderd_chatd_stream_retries",
    "coderd_chatd_stream_buffer_dropped",
    "coderd_chatd_tool_errors",
}


def assert_error_shape(response: httpx.Response, status: int, kind: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    error = body["error"]
    assert set(error) >= {"kind", "message", "detail"}
    assert error["kind"] == kind
    assert error["message"].endswith(".")
    assert "Traceback" not in response.text
    return error  # type: ignore[no-any-return]


async def test_healthz_and_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert len(response.headers["x-request-id"]) == 16


async def test_readyz_reports_draining_as_503(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    server.state.draining = True
    response = await client.get("/readyz")
    assert_error_shape(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"


async def test_metrics_exposes_the_seed_families_and_http_metrics(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert families >= SEED_FAMILIES, SEED_FAMILIES - families
    assert "chatd_http_requests" in families
    assert "process_cpu_seconds" in families


async def test_metrics_token_protects_metrics_when_set(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    server.state.metrics_token = "s3cret"
    assert_error_shape(await client.get("/metrics"), 401, "unauthorized")
    ok = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.get("/api/nope"), 404, "not_found")


async def test_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.delete("/healthz"), 405, "method_not_allowed")


async def test_missing_or_malformed_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/users/me")
    assert_error_shape(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    bad = await client.get("/api/users/me", headers={"Authorization": "Bearer nope"})
    assert_error_shape(bad, 401, "unauthorized")


async def test_oversized_body_is_413_before_any_handler(client: httpx.AsyncClient) -> None:
    body = b'{"message": "' + b"x" * (1 << 20) + b'"}'
    response = await client.post(
        "/api/users/me", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error_shape(response, 413, "payload_too_large")


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    response = await client.post(
        "/api/users/me", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error_shape(response, 413, "payload_too_large")


async def test_non_json_body_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/users/me", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert_error_shape(response, 415, "unsupported_media_type")


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/healthz" in response.json()["paths"]
