"""The offline scripted model, driven through the real loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatd.errors import ErrorKind
from chatd.loop import (
    ManualClock,
    PersistedStep,
    RunOptions,
    StreamError,
    Tool,
    ToolCall,
    ToolResponse,
    run,
)
from chatd.providers.scripted import InjectedError, ScriptedModel, ScriptedReply
from chatd.tools import BuiltinToolsConfig, Workspace, builtin_tools
from chatd.types import Message, Role, TextPart, ToolCallPart, ToolResultPart

USER = [Message(Role.USER, [TextPart("what time is it?")])]


class Steps(list[PersistedStep]):
    async def __call__(self, step: PersistedStep) -> None:
        self.append(step)


async def _clock_tool(_call: ToolCall) -> ToolResponse:
    return ToolResponse.text("12:00")


async def test_default_script_calls_the_first_tool_once_then_answers() -> None:
    steps = Steps()
    model = ScriptedModel()
    await run(
        RunOptions(
            model=model,
            messages=USER,
            tools=[Tool("clock", "tells the time", _clock_tool)],
            max_steps=5,
            persist_step=steps,
        )
    )
    assert len(steps) == 2
    calls = [p for p in steps[0].content if isinstance(p, ToolCallPart)]
    assert [c.tool_name for c in calls] == ["clock"]
    [result] = [p for p in steps[0].content if isinstance(p, ToolResultPart)]
    assert result.output is not None and not result.is_error
    final = [p for p in steps[1].content if isinstance(p, TextPart)]
    assert "12:00" in final[0].text


async def test_default_script_without_tools_replies_with_the_user_text() -> None:
    steps = Steps()
    await run(RunOptions(model=ScriptedModel(), messages=USER, persist_step=steps))
    [step] = steps
    texts = [p.text for p in step.content if isinstance(p, TextPart)]
    assert "what time is it?" in texts[0]
    assert step.usage.input_tokens == 4


async def test_injected_429_is_retried_then_answers() -> None:
    clock = ManualClock()
    steps = Steps()
    retries: list[str] = []
    model = ScriptedModel(
        script=[ScriptedReply(error=InjectedError(retry_after=3)), ScriptedReply(text="ok now")]
    )
    await run(
        RunOptions(
            model=model,
            messages=USER,
            persist_step=steps,
            clock=clock,
            on_retry=lambda _a, _e, c, _d: retries.append(c.kind),
        )
    )
    assert retries == [ErrorKind.RATE_LIMIT]
    assert clock.sleeps == [3.0]  # the provider's Retry-After beat the 1 s backoff
    assert [p for p in steps[0].content] == [TextPart("ok now")]


async def test_mid_stream_disconnect_is_a_retryable_timeout() -> None:
    clock = ManualClock()
    steps = Steps()
    kinds: list[str] = []
    model = ScriptedModel(
        script=[
            ScriptedReply(text="a b c d", error=InjectedError(after_parts=3)),
            ScriptedReply(text="complete answer"),
        ]
    )
    await run(
        RunOptions(
            model=model,
            messages=USER,
            persist_step=steps,
            clock=clock,
            on_retry=lambda _a, _e, c, _d: kinds.append(c.kind),
        )
    )
    assert kinds == [ErrorKind.TIMEOUT]
    assert steps[0].content == [TextPart("complete answer")]  # nothing of the failed attempt


async def test_injected_401_fails_the_run() -> None:
    model = ScriptedModel(
        script=[ScriptedReply(error=InjectedError(status_code=401, message="bad key"))]
    )
    with pytest.raises(StreamError) as info:
        await run(RunOptions(model=model, messages=USER, persist_step=Steps()))
    assert info.value.classified.kind == ErrorKind.AUTH
    assert info.value.classified.status_code == 401


# --- the /call directive and the default first call -----------------------------------


class Recorder:
    """A tool that records the raw input of every call and answers with `response`."""

    def __init__(self, name: str, response: ToolResponse | None = None) -> None:
        self.name = name
        self.inputs: list[str] = []
        self.response = response or ToolResponse.text(f"{name} ran")

    async def __call__(self, call: ToolCall) -> ToolResponse:
        self.inputs.append(call.input)
        return self.response

    def tool(self) -> Tool:
        schema = {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        }
        return Tool(self.name, f"the {self.name} tool", self, schema)


async def _turn(message: str, *tools: Recorder, model: ScriptedModel | None = None) -> Steps:
    steps = Steps()
    await run(
        RunOptions(
            model=model or ScriptedModel(),
            messages=[Message(Role.USER, [TextPart(message)])],
            tools=[t.tool() for t in tools],
            max_steps=5,
            persist_step=steps,
        )
    )
    return steps


def _calls(steps: Steps) -> list[tuple[str, str]]:
    return [(p.tool_name, p.input) for s in steps for p in s.content if isinstance(p, ToolCallPart)]


def _final_text(steps: Steps) -> str:
    return " ".join(p.text for p in steps[-1].content if isinstance(p, TextPart))


async def test_call_directive_calls_exactly_that_tool_with_those_arguments_once() -> None:
    first, target = Recorder("first"), Recorder("target", ToolResponse.text("line 1\nline 2"))
    arguments = '{"path": "a b.txt",  "n": 1.50, "z": [1, {"k": null}]}'
    steps = await _turn(f"  /call target {arguments}\n", first, target)
    assert _calls(steps) == [("target", arguments)]  # verbatim, spacing and 1.50 kept
    assert target.inputs == [arguments] and first.inputs == []
    assert len(steps) == 2
    assert _final_text(steps) == "line 1\nline 2"


async def test_several_call_lines_make_one_call_per_step_in_order() -> None:
    first = Recorder("first", ToolResponse.text("one"))
    second = Recorder("second", ToolResponse.text("two"))
    message = '/call second {"n": 1}\n\n/call first\n/call second {"n": 2}'
    steps = await _turn(message, first, second)
    assert _calls(steps) == [("second", '{"n": 1}'), ("first", "{}"), ("second", '{"n": 2}')]
    assert [len(_calls([step])) for step in steps] == [1, 1, 1, 0]
    assert _final_text(steps) == "two\none\ntwo"


async def test_call_directive_without_arguments_sends_an_empty_object() -> None:
    target = Recorder("process_list", ToolResponse.text("no processes"))
    steps = await _turn("/call process_list", Recorder("other"), target)
    assert _calls(steps) == [("process_list", "{}")]
    assert _final_text(steps) == "no processes"


async def test_call_directive_answers_with_the_real_error_text() -> None:
    failing = Recorder("read_file", ToolResponse.error("File not found: nope.txt"))
    steps = await _turn('/call read_file {"path": "nope.txt"}', failing)
    [result] = [p for p in steps[0].content if isinstance(p, ToolResultPart)]
    assert result.is_error
    assert "File not found: nope.txt" in _final_text(steps)


async def test_call_directive_describes_a_media_result() -> None:
    image = Recorder("screenshot", ToolResponse.media(b"\x89PNG" + b"\0" * 96, "image/png"))
    steps = await _turn("/call screenshot {}", image)
    text = _final_text(steps)
    assert "image/png" in text and "100 bytes" in text


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('/call nope {"path": "x"}', ["'nope'", "Offered tools: alpha, beta"]),
        ('/call alpha {"path": }', ["not valid JSON", "Expecting value"]),
        ("/call alpha [1, 2]", ["must be a JSON object", "an array"]),
        ('/call alpha "x"', ["must be a JSON object", "a string"]),
        ("/call", ["needs a tool name"]),
    ],
)
async def test_call_directive_that_cannot_be_obeyed_replies_in_text(
    message: str, expected: list[str]
) -> None:
    alpha, beta = Recorder("alpha"), Recorder("beta")
    steps = await _turn(message, alpha, beta)
    assert _calls(steps) == [] and alpha.inputs == beta.inputs == []
    assert len(steps) == 1  # one step: a text answer, no tool round
    text = _final_text(steps)
    for fragment in expected:
        assert fragment in text, text


async def test_call_directive_for_a_tool_in_a_chat_without_tools_says_none_is_offered() -> None:
    steps = await _turn("/call execute {}")
    assert "Offered tools: none" in _final_text(steps)


@pytest.mark.parametrize(
    "message",
    ['please /call beta {"path": "x"}', '/callback beta {"path": "x"}', "/CALL beta"],
)
async def test_call_inside_a_longer_message_is_not_a_directive(message: str) -> None:
    alpha, beta = Recorder("alpha"), Recorder("beta")
    steps = await _turn(message, alpha, beta)
    assert [name for name, _ in _calls(steps)] == ["alpha"]  # the default call, not beta
    assert beta.inputs == []


async def test_a_script_wins_over_the_call_directive() -> None:
    target = Recorder("target")
    model = ScriptedModel(script=[ScriptedReply(text="scripted answer")])
    steps = await _turn("/call target {}", target, model=model)
    assert _calls(steps) == [] and target.inputs == []
    assert _final_text(steps) == "scripted answer"


async def test_default_call_prefers_execute_with_a_harmless_command() -> None:
    execute = Recorder("execute", ToolResponse.text("hello from /ws"))
    steps = await _turn("hi", Recorder("read_file"), Recorder("write_file"), execute)
    [(name, arguments)] = _calls(steps)
    assert name == "execute"
    assert json.loads(arguments) == {"command": 'echo "hello from $(pwd)" && uname -sr && id -u'}
    assert "hello from /ws" in _final_text(steps)


async def test_default_call_without_execute_writes_hello_txt() -> None:
    writer = Recorder("write_file")
    steps = await _turn("hi", Recorder("read_file"), writer)
    [(name, arguments)] = _calls(steps)
    assert name == "write_file"
    assert json.loads(arguments)["path"] == "hello.txt"


async def test_default_call_of_another_tool_keeps_the_first_with_example_arguments() -> None:
    first = Recorder("lookup")
    steps = await _turn("hi", first, Recorder("other"))
    assert _calls(steps) == [("lookup", '{"path": "example"}')]


async def test_default_reply_to_an_error_result_carries_its_text() -> None:
    failing = Recorder("lookup", ToolResponse.error("no such city"))
    steps = await _turn("hi", failing)
    assert "no such city" in _final_text(steps)


async def test_default_call_succeeds_with_the_real_builtin_tools(tmp_path: Path) -> None:
    async with Workspace(tmp_path / "ws", chat_id="chat-1") as workspace:
        steps = Steps()
        await run(
            RunOptions(
                model=ScriptedModel(),
                messages=USER,
                tools=builtin_tools(workspace, BuiltinToolsConfig(kill_grace=0.3)),
                max_steps=5,
                persist_step=steps,
            )
        )
    [result] = [p for p in steps[0].content if isinstance(p, ToolResultPart)]
    assert result.tool_name == "execute" and not result.is_error, result
    assert "hello from" in _final_text(steps)
