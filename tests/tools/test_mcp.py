"""MCP servers as chat tools, against a real server (tests/tools/mcp_server.py) run by the test."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
from prometheus_client import CollectorRegistry

from chatd.loop import (
    Interrupt,
    Metrics,
    RunOptions,
    RunOutcome,
    Tool,
    ToolCall,
    run,
)
from chatd.loop._run import INTERRUPTED_TOOL_RESULT
from chatd.providers.scripted import ScriptedModel, ScriptedReply
from chatd.tools import (
    McpConnections,
    McpServerConfig,
    McpToolInfo,
    ToolConfig,
    Workspace,
    builtin_tools,
    select_tools,
)
from chatd.types import (
    Message,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    ToolResultText,
)
from tests.loop.helpers import Recorder
from tests.loop.promhelpers import sample_value

from .helpers import is_gone

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def stdio_server(slug: str = "calc", **overrides: Any) -> McpServerConfig:
    return McpServerConfig(
        slug=slug, transport="stdio", command=(sys.executable, SERVER), **overrides
    )


@pytest.fixture
def errlog(tmp_path: Path) -> Iterator[TextIO]:
    # The server's stderr (its own logs) goes to a file, not into the test output.
    with open(tmp_path / "mcp-stderr.log", "w") as file:
        yield file


async def call(tools: dict[str, Tool], name: str, **arguments: Any) -> Any:
    return await tools[name].run(ToolCall(f"call-{name}", name, json.dumps(arguments)))


def results_of(persist: Recorder) -> list[ToolResultPart]:
    return [p for s in persist.steps for p in s.content if isinstance(p, ToolResultPart)]


async def test_mcp_tools_through_a_whole_chat_turn(workspace: Workspace, errlog: TextIO) -> None:
    registry = CollectorRegistry()
    model = ScriptedModel(
        script=[
            ScriptedReply(text="Adding.", tool_calls=[("calc__add", '{"a": 2, "b": 3}')]),
            ScriptedReply(tool_calls=[("calc__pid", "{}"), ("calc__fail", '{"message": "no"}')]),
            ScriptedReply(tool_calls=[("calc__pid", "{}")]),
            ScriptedReply(text="2 + 3 = 5"),
        ]
    )
    persist = Recorder()
    async with McpConnections([stdio_server()], errlog=errlog) as mcp:
        assert mcp.failures == {}
        listed = [tool.name for tool in mcp.listings["calc"]]
        assert {"add", "echo", "fail", "hang", "pid"} <= set(listed)
        selection = select_tools(ToolConfig(), builtin=builtin_tools(workspace), mcp=mcp.tools)
        await run(
            selection.apply(
                RunOptions(
                    model=model,
                    persist_step=persist,
                    messages=[Message(Role.USER, [TextPart("what is 2 + 3?")])],
                    max_steps=10,
                    metrics=Metrics(registry),
                )
            )
        )
    offered = {tool.name: tool for tool in model.calls[0].tools}
    assert offered["calc__add"].input_schema["required"] == ["a", "b"]
    assert offered["calc__add"].description == "Add two integers."
    assert "read_file" in offered

    add, pid_1, fail, pid_2 = results_of(persist)
    assert add.output == ToolResultText("5")
    assert isinstance(fail.output, ToolResultError)
    assert "no" in (fail.output.error or "")
    # One server process served every step of the run ...
    assert pid_1.output == pid_2.output
    server_pid = int(pid_1.output.text)  # type: ignore[union-attr]
    # ... and it is gone once the run's connections are closed.
    assert is_gone(server_pid)
    # The model saw the result in the next step; the failure was counted.
    assert any(
        isinstance(p, ToolResultPart) and p.output == ToolResultText("5")
        for m in model.calls[1].prompt
        for p in m.content
    )
    errors = sample_value(registry, "coderd_chatd_tool_errors_total", {"tool_name": "calc__fail"})
    assert errors == 1
    assert persist.steps[-1].content == [TextPart("2 + 3 = 5")]


async def test_results_are_converted_capped_and_bounded(errlog: TextIO) -> None:
    server = stdio_server(call_timeout_s=2)
    async with McpConnections([server], errlog=errlog) as mcp:
        tools = {tool.name: tool for tool in mcp.tools}

        media = (await call(tools, "calc__pixel")).to_output()
        assert isinstance(media, ToolResultMedia)
        assert media.media_type == "image/png"
        assert base64.b64decode(media.data) == base64.b64decode("iVBORw0KGgo=")
        assert media.text == "Resource readme: file:///readme.md\nembedded"

        big = await call(tools, "calc__big", size=100_000)
        assert not big.is_error
        assert f"… [{100_000 - 32 * 1024} bytes omitted] …" in big.content

        started = time.monotonic()
        hung = await call(tools, "calc__hang")
        assert hung.is_error
        assert hung.content == "MCP tool call timed out after 2 s"
        assert time.monotonic() - started < 5
        # The connection is still good after a timed-out call.
        assert (await call(tools, "calc__echo", text="still here")).content == "still here"

        bad = await tools["calc__echo"].run(ToolCall("c", "calc__echo", "not json"))
        assert bad.is_error and "not a JSON object" in bad.content

        crashed = await call(tools, "calc__crash")
        assert crashed.is_error
        assert crashed.content.startswith("MCP server calc failed the call:")
        after = await call(tools, "calc__echo", text="x")
        assert after.is_error


async def test_a_server_that_fails_to_start_gives_error_results_and_the_run_succeeds(
    errlog: TextIO,
) -> None:
    cached = (McpToolInfo("lookup", "Look something up.", {"type": "object"}),)
    broken = McpServerConfig(
        slug="broken",
        transport="stdio",
        command=(sys.executable, "-c", "import sys; sys.exit(1)"),
        tool_cache=cached,
    )
    missing = McpServerConfig(
        slug="missing", transport="stdio", command=("/nonexistent/mcp-server",)
    )
    registry = CollectorRegistry()
    model = ScriptedModel(
        script=[ScriptedReply(tool_calls=[("broken__lookup", "{}")]), ScriptedReply(text="ok")]
    )
    persist = Recorder()
    async with McpConnections([broken, missing], errlog=errlog) as mcp:
        assert [tool.name for tool in mcp.tools] == ["broken__lookup"]
        assert set(mcp.failures) == {"broken", "missing"}
        assert "nonexistent" in mcp.failures["missing"]
        assert mcp.listings == {}
        await run(
            RunOptions(
                model=model,
                persist_step=persist,
                tools=mcp.tools,
                max_steps=5,
                metrics=Metrics(registry),
            )
        )
    [result] = results_of(persist)
    assert isinstance(result.output, ToolResultError)
    assert (result.output.error or "").startswith("MCP server broken is unavailable: ")
    assert persist.steps[-1].content == [TextPart("ok")]
    labels = {"tool_name": "broken__lookup"}
    assert sample_value(registry, "coderd_chatd_tool_errors_total", labels) == 1


async def test_a_server_that_never_answers_times_out_at_connect(errlog: TextIO) -> None:
    silent = McpServerConfig(
        slug="silent",
        transport="stdio",
        # reads its stdin until EOF, never answering: the SDK's close ends it at once
        command=(sys.executable, "-c", "import sys; sys.stdin.read()"),
        connect_timeout_s=0.3,
    )
    started = time.monotonic()
    async with McpConnections([silent], errlog=errlog) as mcp:
        assert mcp.failures == {"silent": "it did not answer within 0.3 s"}
        assert mcp.tools == []
    assert time.monotonic() - started < 10


async def test_a_hanging_mcp_tool_cannot_hang_the_chat(errlog: TextIO) -> None:
    interrupt = Interrupt()
    persist = Recorder()
    model = ScriptedModel(
        script=[ScriptedReply(text="Waiting.", tool_calls=[("calc__hang", "{}")])]
    )
    async with McpConnections([stdio_server()], errlog=errlog) as mcp:
        task = asyncio.create_task(
            run(
                RunOptions(
                    model=model,
                    persist_step=persist,
                    tools=mcp.tools,
                    interrupt=interrupt,
                    max_steps=3,
                )
            )
        )
        await _until(lambda: bool(model.calls))
        await asyncio.sleep(0.2)  # the call is now in flight at the server
        interrupt.interrupt()
        outcome = await asyncio.wait_for(task, 10)
        assert outcome is RunOutcome.INTERRUPTED
        # The session survives the cancelled call.
        echo = {t.name: t for t in mcp.tools}["calc__echo"]
        assert (await echo.run(ToolCall("c", "calc__echo", '{"text": "hi"}'))).content == "hi"
    [step] = persist.steps
    assert step.content[0] == TextPart("Waiting.")
    assert isinstance(step.content[1], ToolCallPart)
    assert step.content[2] == ToolResultPart(
        tool_call_id=step.content[1].tool_call_id,
        tool_name="calc__hang",
        output=ToolResultError(INTERRUPTED_TOOL_RESULT),
        created_at=step.content[2].created_at,  # type: ignore[union-attr]
    )


async def test_closing_finishes_even_when_the_run_is_cancelled_meanwhile(
    errlog: TextIO,
) -> None:
    """Shutdown's grace can end while a runner closes its servers: none may be left."""
    mcp = await McpConnections([stdio_server()], errlog=errlog).__aenter__()
    pid = int((await call({t.name: t for t in mcp.tools}, "calc__pid")).content)
    closing = asyncio.create_task(mcp.aclose())
    await asyncio.sleep(0.01)  # the server is asked to stop; stopping takes longer
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert is_gone(pid)


async def test_allow_and_deny_filters_and_disabled_servers(errlog: TextIO) -> None:
    cache = tuple(McpToolInfo(name) for name in ("add", "echo", "pid", "fail"))
    servers = [
        McpServerConfig(
            slug="calc",
            transport="stdio",
            command=("/nonexistent/mcp-server",),
            tool_cache=cache,
            allow_tools=("add", "echo", "pid"),
            deny_tools=("echo",),
        ),
        stdio_server("off", enabled=False),
    ]
    async with McpConnections(servers, errlog=errlog) as mcp:
        assert sorted(tool.name for tool in mcp.tools) == ["calc__add", "calc__pid"]
        assert set(mcp.failures) == {"calc"}


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(tmp_path / "http-server.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, SERVER, "http", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_listening(port, process)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_streamable_http_server(http_server: str) -> None:
    server = McpServerConfig(
        slug="web",
        transport="streamable_http",
        url=http_server,
        headers={"Authorization": "Bearer test"},
    )
    async with McpConnections([server]) as mcp:
        assert mcp.failures == {}
        tools = {tool.name: tool for tool in mcp.tools}
        assert (await call(tools, "web__add", a=40, b=2)).content == "42"


async def test_an_unreachable_http_server_is_a_failure_not_an_exception() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = McpServerConfig(
        slug="down", transport="streamable_http", url=f"http://127.0.0.1:{port}/mcp"
    )
    async with McpConnections([server]) as mcp:
        assert list(mcp.failures) == ["down"]
        assert mcp.tools == []


async def test_no_servers_means_no_sdk_work() -> None:
    async with McpConnections([]) as mcp:
        assert mcp.tools == []
        assert mcp.failures == {}
    with pytest.raises(RuntimeError, match="only once"):
        await mcp.__aenter__()


async def _until(condition: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the HTTP MCP server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the HTTP MCP server never listened")
