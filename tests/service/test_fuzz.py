"""Fuzzing a live `chatd serve`, on SQLite and on PostgreSQL: no 5xx, every error in the
documented shape.

Two passes over every operation of the OpenAPI document, with a real token over real
HTTP:

* schemathesis: schema-derived requests, valid and invalid (the never-ending SSE
  streams are left out);
* targeted: every path, query and header parameter, and every body field (two levels
  deep), in turn given each value of a fixed list that broke chatd before — integers
  past 64 bits, Unicode digits, NULs, lone surrogates, huge strings, wrong types —
  while the rest of the request stays valid (real ids, a minimal valid body). SSE
  routes are included: only their status is read.

Both are derandomized; `-s` prints how many operations and requests each engine saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from chatd.store import Store
from chatd.store.testing import TemporaryPostgres
from chatd.types import TextPart
from tests.api.conftest import free_port
from tests.service.test_crash import _env

EXAMPLES_PER_OPERATION = 12


def fuzz_settings(examples: int) -> settings:
    """Reproducible runs of `examples` cases an operation: no deadline, no example
    database, no health check (a live server is slow on purpose)."""
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


STREAMING = ("/stream", "/watch")
# Admin routes are fuzzed with an admin token (an ordinary one only ever gets 403).
ADMIN = ("/api/chats/model-configs", "/api/chats/provider-keys", "/api/chats/mcp-servers")

# What a 32- or 64-bit column, `int()` or `str.isdigit()` trips over, and what a lax
# parser takes for a number.
NUMBERS = [
    str(2**31),
    str(2**63),
    str(2**63 - 1),
    str(-(2**63) - 1),
    "1" + "0" * 5000,
    "²",
    "٣",
    "１",
    "+1",
    " 1",
    "1.0",
    "1e3",
    "0x10",
    "1_000",
    "-0",
    "",
]
STRINGS = ["\x00", "a\x00b", "x" * 6000, "é😀\u202e", "%", "../..", "'\"", "null"]
# Already percent-encoded: not UTF-8 (a lone byte, an encoded surrogate).
RAW_ENCODED = ["%FF", "%ED%A0%80"]
# Body values: the strings above, one too big for any field, a lone surrogate, and
# every wrong type. `HUGE_INT` is spliced into the JSON text (json.dumps refuses it).
HUGE_INT = "__huge_int__"
BODY_VALUES: list[Any] = [
    *STRINGS,
    "x" * 300_000,
    "\ud800",
    "yes",
    "1",
    1,
    0,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    1.5,
    True,
    None,
    [],
    {},
    HUGE_INT,
]
# A well-formed id that names nothing (path parameters the prepared ids do not cover).
UNKNOWN_ID = "0193f0c0-0000-7000-8000-000000000000"
# Minimal bodies use these where "x" would be refused before the field under test is
# looked at.
GOOD_FIELDS = {"provider": "scripted", "url": "http://127.0.0.1:9/mcp", "tool_policy": "none"}


@dataclass
class Served:
    url: str
    token: str
    admin_token: str
    ids: dict[str, str]
    requests: int = 0
    failures: list[str] = field(default_factory=list)

    def bearer(self, path: str) -> dict[str, str]:
        token = self.admin_token if path.startswith(ADMIN) else self.token
        return {"Authorization": f"Bearer {token}"}

    def check(self, label: str, response: requests.Response) -> None:
        self.requests += 1
        status = response.status_code
        if status >= 500:
            self.failures.append(f"{label} -> {status} {response.text[:200]}")
        elif status >= 400:
            try:
                error = response.json()["error"]
                assert {"kind", "message", "detail"} <= set(error)
            except (ValueError, KeyError, TypeError, AssertionError):
                self.failures.append(f"{label} -> {status} undocumented {response.text[:200]}")


async def _prepare(url: str, data_dir: Path) -> tuple[str, str, dict[str, str]]:
    """Users and one of each resource, so targeted requests reach past the 404."""
    store = await Store.open(url, data_dir=data_dir)
    try:
        user = await store.create_user("fuzz")
        token, _ = await store.create_api_token(user.id)
        admin = await store.create_user("fuzz-admin", is_admin=True)
        admin_token, _ = await store.create_api_token(admin.id)
        chat = await store.create_chat(user.id, [TextPart("hello")])
        message = (await store.list_messages(chat.id))[0]
        config = await store.create_model_config("fuzz-model", "scripted", "fuzz")
        key = await store.create_provider_key("fuzz-key", "openai", "sk-fuzz-key")
        server = await store.create_mcp_server("fuzz", "stdio", command=["true"])
        ids = {
            "chat_id": chat.id,
            "message_id": message.id,
            "config_id": config.id,
            "key_id": key.id,
            "server_id": server.id,
            "user_id": user.id,
        }
        return token, admin_token, ids
    finally:
        await store.close()


def _wait_up(url: str) -> None:
    for _ in range(300):
        with contextlib.suppress(requests.ConnectionError):  # not listening yet
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("chatd serve did not come up")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    env = _env(data_dir)
    if request.param == "postgresql":
        cluster: TemporaryPostgres = request.getfixturevalue("postgres")  # tests/store
        env["CHATD_DATABASE_URL"] = asyncio.run(cluster.create_database("chatd_fuzz"))
    database = env.get("CHATD_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/chatd.db")
    token, admin_token, ids = asyncio.run(_prepare(database, data_dir))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_up(url)
        yield Served(url, token, admin_token, ids)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def _document(served: Served) -> dict[str, Any]:
    document: dict[str, Any] = requests.get(f"{served.url}/openapi.json", timeout=10).json()
    return document


def test_no_5xx_and_documented_errors_under_schema_fuzzing(served: Served) -> None:
    served.failures.clear()
    schema = schemathesis.openapi.from_dict(_document(served))
    checked = 0
    for operation in [r.ok() for r in schema.get_all_operations()]:
        if operation.path.endswith(STREAMING):
            continue

        @fuzz_settings(EXAMPLES_PER_OPERATION)
        @given(operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            headers = served.bearer(case.operation.path)
            response = case.call(base_url=served.url, headers=headers, timeout=15)
            served.check(f"{case.method} {case.formatted_path}", response)

        run()
        checked += 1
    print(f"\nschemathesis: {checked} operations, {served.requests} requests")
    assert checked >= 15, "the fuzz covered too few operations"
    assert served.failures == [], "\n".join(served.failures[:20])


# -- targeted values ---------------------------------------------------------------


class _Schemas:
    """Resolves `$ref`s and builds the smallest body each schema accepts."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        for union in ("anyOf", "oneOf"):
            options = [o for o in schema.get(union, ()) if o.get("type") != "null"]
            if options:
                return self.resolve(options[0])
        return schema

    def minimal(self, schema: dict[str, Any], name: str = "") -> Any:
        schema = self.resolve(schema)
        if name in GOOD_FIELDS:
            return GOOD_FIELDS[name]
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        if "default" in schema:
            return copy.deepcopy(schema["default"])
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            return {k: self.minimal(props[k], k) for k in schema.get("required", ()) if k in props}
        if kind == "array":
            return [self.minimal(schema.get("items", {}))] * schema.get("minItems", 0)
        if kind in ("integer", "number"):
            return schema.get("minimum", 1)
        if kind == "boolean":
            return False
        return "x" * max(1, schema.get("minLength", 1))

    def fields(self, schema: dict[str, Any], depth: int = 2) -> Iterator[tuple[Any, ...]]:
        """Paths to every field, `0` standing for a list's only item."""
        schema = self.resolve(schema)
        for name, sub in schema.get("properties", {}).items():
            yield (name,)
            if depth > 1:
                inner = self.resolve(sub)
                if inner.get("type") == "array" and inner.get("items"):
                    yield (name, 0)
                    for rest in self.fields(inner["items"], depth - 1):
                        yield (name, 0, *rest)
                else:
                    for rest in self.fields(inner, depth - 1):
                        yield (name, *rest)


def _with_value(
    schemas: _Schemas, schema: dict[str, Any], body: Any, path: tuple[Any, ...], value: Any
) -> Any:
    """`body` with `value` at `path`, building minimal containers on the way."""
    body = copy.deepcopy(body)
    holder, schema = body, schemas.resolve(schema)
    for step, key in enumerate(path):
        last = step == len(path) - 1
        if key == 0:
            items = schemas.resolve(schema.get("items", {}))
            holder[:] = [value if last else schemas.minimal(items)]
            holder, schema = holder[0], items
            continue
        sub = schemas.resolve(schema.get("properties", {}).get(key, {}))
        if last:
            holder[key] = value
        else:
            if not isinstance(holder.get(key), dict | list):
                holder[key] = [] if sub.get("type") == "array" else schemas.minimal(sub)
            holder, schema = holder[key], sub
    return body


def _encode(body: Any) -> bytes:
    text = json.dumps(body).replace(f'"{HUGE_INT}"', "1" + "0" * 5000)
    return text.encode("utf-8", "surrogatepass")


def _send(
    served: Served,
    method: str,
    path: str,
    label: str,
    *,
    query: str = "",
    headers: dict[str, Any] | None = None,
    body: bytes | None = None,
) -> None:
    all_headers: dict[str, Any] = {**served.bearer(path), **(headers or {})}
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    url = served.url + path + (f"?{query}" if query else "")
    with requests.request(
        method, url, headers=all_headers, data=body, timeout=30, stream=True
    ) as response:
        if response.status_code != 200 or not path.endswith(STREAMING):
            response.content  # noqa: B018 - read the whole answer (SSE: just the status)
        served.check(label, response)


@dataclass
class _Operation:
    """One operation of the OpenAPI document, with real ids and a minimal valid body."""

    method: str
    template: str
    spec: dict[str, Any]
    ids: dict[str, str]
    schemas: _Schemas

    def path(self, **override: str) -> str:
        out = self.template
        for param in self.spec.get("parameters", []):
            if param["in"] == "path":
                name = param["name"]
                value = override.get(name, quote(self.ids.get(name, UNKNOWN_ID), safe=""))
                out = out.replace("{" + name + "}", value)
        return out

    @property
    def body_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        schema: dict[str, Any] | None = content.get("application/json", {}).get("schema")
        return schema

    def base_body(self) -> Any:
        schema = self.body_schema
        return None if schema is None else self.schemas.minimal(schema)

    def label(self, where: str, name: str, value: Any) -> str:
        return f"{self.method.upper()} {self.template} {where} {name}={repr(value)[:40]}"


def _parameter_cases(served: Served, op: _Operation) -> None:
    base = op.base_body()
    body = None if base is None else _encode(base)
    for param in op.spec.get("parameters", []):
        name, where = param["name"], param["in"]
        for value in [quote(v, safe="") for v in NUMBERS + STRINGS] + RAW_ENCODED:
            label = op.label(where, name, value)
            if where == "path":
                _send(served, op.method, op.path(**{name: value}), label, body=body)
            elif where == "query":
                _send(served, op.method, op.path(), label, query=f"{name}={value}", body=body)
    headers = [p["name"] for p in op.spec.get("parameters", []) if p["in"] == "header"]
    # NUL, CR, LF and leading blanks are not header values: the HTTP parser (or the
    # client) refuses them before any application code runs.
    if op.method == "post" and "idempotency-key" not in {h.lower() for h in headers}:
        headers.append("Idempotency-Key")  # read by some routes without being declared
    for name in headers:
        for value in [v for v in NUMBERS + STRINGS if "\x00" not in v and v == v.lstrip()]:
            label = op.label("header", name, value)
            headers_ = {name: value.encode("utf-8")}
            _send(served, op.method, op.path(), label, headers=headers_, body=body)


def _body_cases(served: Served, op: _Operation) -> None:
    schema = op.body_schema
    if schema is None:
        return
    base = op.base_body()
    for field_path in op.schemas.fields(schema):
        for value in BODY_VALUES:
            body = _with_value(op.schemas, schema, base, field_path, value)
            label = op.label("body", ".".join(map(str, field_path)), value)
            _send(served, op.method, op.path(), label, body=_encode(body))


def test_no_5xx_and_documented_errors_for_extreme_values(served: Served) -> None:
    served.failures.clear()
    before = served.requests
    document = _document(served)
    schemas = _Schemas(document)
    operations = 0
    for template, methods in document["paths"].items():
        for method, spec in methods.items():
            op = _Operation(method, template, spec, served.ids, schemas)
            _parameter_cases(served, op)
            _body_cases(served, op)
            operations += 1
    print(f"\ntargeted: {operations} operations, {served.requests - before} requests")
    assert operations >= 25, "the fuzz covered too few operations"
    print("\n".join(served.failures))
    report = [f"{len(served.failures)} failures", *served.failures[:40]]
    assert served.failures == [], "\n".join(report)
