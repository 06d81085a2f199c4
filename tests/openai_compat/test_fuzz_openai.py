"""schemathesis over the /v1 routes of a live replica: no 5xx, every error in OpenAI's
shape with chatd's error kind in `code`."""

from __future__ import annotations

import asyncio

import httpx
import schemathesis
from hypothesis import given

from tests.service.conftest import LiveReplica
from tests.service.test_fuzz import fuzz_settings

EXAMPLES_PER_OPERATION = 25


async def test_no_5xx_and_openai_errors_under_schema_fuzzing(live: LiveReplica) -> None:
    token = await live.token("fuzz")
    async with httpx.AsyncClient(base_url=live.url) as http:
        document = (await http.get("/v1/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/models",
        "/v1/responses",
        "/v1/responses/{response_id}",
        "/v1/chat/completions",
    }
    failures: list[str] = []

    def fuzz(operation: schemathesis.APIOperation) -> None:
        @fuzz_settings(EXAMPLES_PER_OPERATION)
        @given(operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            if isinstance(case.body, dict):
                case.body["stream"] = False  # a stream of a fuzzed turn never says "done"
            response = case.call(
                base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            label = f"{case.method} {case.formatted_path} -> {response.status_code}"
            if response.status_code >= 500:
                failures.append(label + " " + response.text[:300])
            elif response.status_code >= 400:
                try:
                    error = response.json()["error"]
                    assert {"message", "type", "code"} <= set(error)
                except (ValueError, KeyError, TypeError, AssertionError):
                    failures.append(label + " not OpenAI's error shape " + response.text[:300])

        run()

    for operation in operations:  # the fuzzer is synchronous; the replica runs here
        await asyncio.to_thread(fuzz, operation)
    assert failures == [], "\n".join(failures[:20])
