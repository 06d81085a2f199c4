"""Provider tools in the loop (upstream chatloop_test.go's provider-tool cases).

A provider tool's definition goes to the provider as it is; with a runner the loop
runs its calls here (computer use) whatever `active_tools` says, and a callback may
give the result provider metadata that goes back with it in the next request.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatd.loop import RunOptions, RunOutcome, run, to_response_messages
from chatd.protocols import ProviderTool, Tool, ToolCall, ToolDefinition, ToolResponse
from chatd.types import (
    FinishReason,
    Message,
    Role,
    TextPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    ToolResultText,
)
from tests.loop.helpers import Recorder, finish, scripted_model, text, tool_call

USER = [Message(Role.USER, [TextPart("use the computer")])]
COMPUTER = ToolDefinition("computer", "provider runner")
ORIGINAL = {"openai": {"detail": "original"}}


def _counting_tool(name: str, response: ToolResponse) -> tuple[Tool, list[ToolCall]]:
    calls: list[ToolCall] = []

    async def run_it(call: ToolCall) -> ToolResponse:
        calls.append(call)
        return response

    return Tool(name, "provider runner", run_it), calls


def _computer_step() -> list[Any]:
    return [*tool_call("tc-provider-runner", "computer"), finish(FinishReason.TOOL_CALLS)]


def _results(recorder: Recorder) -> list[ToolResultPart]:
    return [p for s in recorder.steps for p in s.content if isinstance(p, ToolResultPart)]


async def test_run_active_tools_allows_provider_runner_execution() -> None:
    # Upstream TestRun_ActiveToolsAllowsProviderRunnerExecution.
    runner, calls = _counting_tool("computer", ToolResponse.text("ran provider runner"))
    read_file, _ = _counting_tool("read_file", ToolResponse.text(""))
    model = scripted_model(_computer_step())
    recorder = Recorder()
    outcome = await run(
        RunOptions(
            model=model,
            messages=USER,
            tools=[read_file],
            active_tools=["read_file"],
            provider_tools=[ProviderTool(COMPUTER, runner=runner)],
            persist_step=recorder,
        )
    )
    assert outcome is RunOutcome.MAX_STEPS
    assert len(calls) == 1, "a provider runner runs even when not in active_tools"
    [result] = _results(recorder)
    assert result.tool_name == "computer" and result.output == ToolResultText("ran provider runner")
    assert [t.name for t in model.calls[0].tools] == ["read_file", "computer"]


async def test_a_runnerless_provider_tool_is_never_run_here() -> None:
    # Its calls are the provider's; a local call of that name is an unknown tool.
    model = scripted_model(_computer_step())
    recorder = Recorder()
    await run(
        RunOptions(
            model=model,
            messages=USER,
            provider_tools=[ProviderTool(COMPUTER), ToolDefinition("web_search")],
            persist_step=recorder,
        )
    )
    [result] = _results(recorder)
    assert result.output == ToolResultError("Tool not found: computer")
    assert [t.name for t in model.calls[0].tools] == ["computer", "web_search"]


SCREENSHOT = ToolResponse(type="image", data=b"image bytes", media_type="image/png", content="shot")


@pytest.mark.parametrize(
    ("callback", "want"),
    [
        pytest.param(lambda _r: ORIGINAL, ORIGINAL, id="callback returns metadata"),
        pytest.param(None, {}, id="callback nil"),
        pytest.param(lambda _r: None, {}, id="callback returns nil"),
    ],
)
async def test_run_provider_tool_result_provider_metadata(
    callback: Any, want: dict[str, Any]
) -> None:
    # Upstream TestRun_ProviderToolResultProviderMetadata; and the metadata goes out
    # with the result in the next request.
    runner, _ = _counting_tool("computer", SCREENSHOT)
    model = scripted_model(_computer_step(), [*text("t", "done"), finish()])
    recorder = Recorder()
    await run(
        RunOptions(
            model=model,
            messages=USER,
            provider_tools=[
                ProviderTool(COMPUTER, runner=runner, result_provider_metadata=callback)
            ],
            max_steps=2,
            persist_step=recorder,
        )
    )
    [result] = _results(recorder)
    assert isinstance(result.output, ToolResultMedia)
    assert result.output.media_type == "image/png"
    assert result.provider_metadata == want
    messages = to_response_messages(recorder.steps[0].content)
    assert [m.role for m in messages] == [Role.ASSISTANT, Role.TOOL]
    [outbound] = messages[1].content
    assert isinstance(outbound, ToolResultPart) and outbound.provider_metadata == want
    [sent] = [p for m in model.calls[1].prompt for p in m.content if isinstance(p, ToolResultPart)]
    assert sent.provider_metadata == want


async def test_result_provider_metadata_is_not_asked_for_an_error_result() -> None:
    runner, _ = _counting_tool("computer", ToolResponse.error("no display"))
    asked: list[ToolResponse] = []

    def callback(response: ToolResponse) -> dict[str, Any]:
        asked.append(response)
        return ORIGINAL

    recorder = Recorder()
    await run(
        RunOptions(
            model=scripted_model(_computer_step()),
            messages=USER,
            provider_tools=[
                ProviderTool(COMPUTER, runner=runner, result_provider_metadata=callback)
            ],
            persist_step=recorder,
        )
    )
    [result] = _results(recorder)
    assert result.is_error and result.provider_metadata == {} and asked == []
