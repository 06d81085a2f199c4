"""`scripted`: a deterministic, offline model for demos, `make run` and tests.

It streams replies from a script of `ScriptedReply` entries (text, reasoning, tool
calls, pauses, injected provider errors, mid-stream disconnects). Without a script it
answers any message with a short reply. When the last user message is exactly `/call
TOOL {JSON arguments}` (arguments optional), it calls that offered tool once with
those arguments verbatim and answers with the tool's result, so any tool can be driven
through the real API without a provider key; a message of several such lines makes the
calls one step each, in order, and answers with every result. Otherwise, when tools
are offered and none has run yet this turn, it makes one call that works in a fresh
workspace (`execute` of a harmless command, else `write_file` of `hello.txt`, else the
first tool with sample arguments) before answering. Offered its web search (the
`web_search` provider tool, `scripted.web_search`), it first "searches" for the last
user message once per turn, a provider-executed call and result with made-up
example.com sources, as Anthropic's server tool streams them. It never touches the
network or a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatd.protocols import Call, GenerateResponse, ToolDefinition
from chatd.titles import TITLE_PROMPT
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultPart,
    ToolResultText,
    Usage,
)

__all__ = ["InjectedError", "ScriptedModel", "ScriptedProviderError", "ScriptedReply"]

P = StreamPartType


class ScriptedProviderError(Exception):
    """An HTTP-style provider failure, shaped like the SDKs' status errors."""

    def __init__(self, status_code: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class InjectedError:
    """Fail an attempt: with an HTTP status before any part, or by disconnecting mid-stream.

    `after_parts` > 0 streams that many parts first and then drops the connection
    (a `ConnectionResetError`), which the loop classifies as a retryable timeout.
    """

    status_code: int = 429
    message: str = "received status 429 from upstream: rate limit exceeded"
    retry_after: float = 0.0
    after_parts: int = 0


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One model call's answer. Tool calls are (name, JSON arguments) pairs."""

    text: str = ""
    reasoning: str = ""
    tool_calls: Sequence[tuple[str, str]] = ()
    # A query: the reply starts with a provider-executed web search for it.
    web_search: str = ""
    error: InjectedError | None = None
    # Seconds to wait before the first part and between deltas (for live demos and
    # load tests). Deltas keep a fixed schedule, as a provider's stream does: one
    # every `delta_delay` from the first, so a slow consumer does not slow the model.
    first_part_delay: float = 0.0
    delta_delay: float = 0.0


@dataclass(slots=True)
class ScriptedModel:
    """Plays `script` one reply per call (the last entry repeats); see the module docstring."""

    model_name: str = "default"
    script: Sequence[ScriptedReply] = ()
    delta_delay: float = 0.0
    # Load tests: each text delta becomes the wall-clock time it was emitted, so a
    # client can measure emit-to-receive latency.
    stamp_deltas: bool = False
    # Tests of several replicas: append a JSON line to this file when a call starts
    # and when it ends, naming `caller`, so a test can prove no chat ever ran on
    # two replicas at once; the line also carries the prompt's system texts, in order,
    # and the names of the tools offered.
    call_log: Path | None = None
    caller: str = ""
    calls: list[Call] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def provider(self) -> str:
        return "scripted"

    @property
    def model(self) -> str:
        return self.model_name

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        index = len(self.calls)
        self.calls.append(call)
        if self.script:
            reply = self.script[min(index, len(self.script) - 1)]
        else:
            reply = self.default_reply(call)
        if reply.error is not None and reply.error.after_parts == 0:
            raise ScriptedProviderError(
                reply.error.status_code, reply.error.message, reply.error.retry_after
            )
        return self._play(reply, call)

    async def generate(self, call: Call) -> GenerateResponse:
        self.calls.append(call)
        if call.prompt and _texts(call.prompt[:1]) == [TITLE_PROMPT]:
            # A title: the first words of the message, as a model would shorten it.
            title = " ".join(_last_user_text(call.prompt).split()[:8])
            return GenerateResponse(content=[TextPart(title[:1].upper() + title[1:])])
        summary = " ".join(_texts(call.prompt))
        return GenerateResponse(content=[TextPart(f"Summary: {summary[:2000]}")])

    def default_reply(self, call: Call) -> ScriptedReply:
        """Obey a `/call` directive, or call one offered tool once per turn, then answer."""
        last_user = _last_user_text(call.prompt)
        results = _tool_results_this_turn(call.prompt)
        directives = _parse_call_directives(last_user)
        if directives:
            return self._directive_reply(directives, call, results)
        local = [t for t in call.tools if not t.provider_type]
        if _WEB_SEARCH in {t.provider_type for t in call.tools} and not any(
            r.provider_executed for r in results
        ):
            return ScriptedReply(
                web_search=last_user,
                text=f"I searched the web for {last_user!r}; the sources are above.",
                delta_delay=self.delta_delay,
            )
        if local and not results:
            tool, args = _first_call(local)
            return ScriptedReply(
                reasoning=f"The user asked: {last_user!r}. I will call {tool} first.",
                text="Let me check that.",
                tool_calls=[(tool, args)],
                delta_delay=self.delta_delay,
            )
        if results:
            return ScriptedReply(
                text=f"The tool answered: {_describe(results[-1])}. That is all I needed "
                f"to reply to {last_user!r}.",
                delta_delay=self.delta_delay,
            )
        attached = ", ".join(
            f"{p.filename or 'a file'} ({p.media_type}, {len(p.data)} bytes)"
            for p in _last_user_files(call.prompt)
        )
        return ScriptedReply(
            reasoning="A short, friendly answer will do.",
            text=f"You said: {last_user!r}{' and attached ' + attached if attached else ''}. "
            "I am chatd's offline scripted model, so this is "
            "a canned reply — configure a real provider to get real answers.",
            delta_delay=self.delta_delay,
        )

    def _directive_reply(
        self, directives: list[_CallDirective], call: Call, results: list[ToolResultPart]
    ) -> ScriptedReply:
        """One call of exactly the named tool per step, in order, then the results
        as the answer."""
        if len(results) >= len(directives):
            text = "\n".join(_answer(result) for result in results)
            return ScriptedReply(text=text, delta_delay=self.delta_delay)
        directive = directives[len(results)]
        if directive.problem:
            return ScriptedReply(text=directive.problem, delta_delay=self.delta_delay)
        offered = [t.name for t in call.tools]
        if directive.tool not in offered:
            listing = ", ".join(offered) if offered else "none"
            return ScriptedReply(
                text=f"/call: this chat does not offer a tool named {directive.tool!r}. "
                f"Offered tools: {listing}.",
                delta_delay=self.delta_delay,
            )
        return ScriptedReply(
            tool_calls=[(directive.tool, directive.arguments)], delta_delay=self.delta_delay
        )

    def _log_call(self, call: Call, phase: str) -> None:
        if self.call_log is None:
            return
        line = json.dumps(
            {
                "caller": self.caller,
                "pid": os.getpid(),
                "user": _last_user_text(call.prompt),
                "system": _texts([m for m in call.prompt if m.role == Role.SYSTEM]),
                # What the model received of each file: enough to prove the bytes arrived.
                "files": [
                    {
                        "file_id": p.file_id,
                        "name": p.filename,
                        "media_type": p.media_type,
                        "sha256": hashlib.sha256(p.data).hexdigest(),
                    }
                    for p in _last_user_files(call.prompt)
                ],
                "tools": [t.name for t in call.tools if not t.provider_type],
                "provider_tools": [t.provider_type for t in call.tools if t.provider_type],
                "phase": phase,
                "t": time.time(),
            }
        )
        # One write of a short line with O_APPEND: lines of several processes never mix.
        fd = os.open(self.call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    async def _play(self, reply: ScriptedReply, call: Call) -> AsyncIterator[StreamPart]:
        # One generator from start to end: a wrapping generator would cost every part
        # another hop (a streaming replica plays 20 parts a second per chat).
        self._log_call(call, "start")
        try:
            parts = self._parts(reply, call, next(self._ids))
            fail_after = reply.error.after_parts if reply.error is not None else 0
            if reply.first_part_delay:
                await asyncio.sleep(reply.first_part_delay)
            loop = asyncio.get_running_loop()
            due = loop.time()
            for count, part in enumerate(parts, start=1):
                if self.stamp_deltas and part.type == P.TEXT_DELTA:
                    part = StreamPart(P.TEXT_DELTA, id=part.id, delta=f"{time.time():.6f} ")
                yield part
                if fail_after and count >= fail_after:
                    raise ConnectionResetError("connection reset by peer (scripted disconnect)")
                if reply.delta_delay and part.delta:
                    due += reply.delta_delay
                    await asyncio.sleep(max(0.0, due - loop.time()))
        finally:
            self._log_call(call, "end")

    def _parts(self, reply: ScriptedReply, call: Call, n: int) -> Iterator[StreamPart]:
        """The reply's parts, made as they are played (a long reply costs no memory)."""
        if reply.reasoning:
            rid = f"r{n}"
            yield StreamPart(P.REASONING_START, id=rid)
            for word in _words(reply.reasoning):
                yield StreamPart(P.REASONING_DELTA, id=rid, delta=word)
            yield StreamPart(P.REASONING_END, id=rid)
        if reply.web_search:
            yield from _web_search(f"ws_{n}", reply.web_search)
        if reply.text:
            tid = f"t{n}"
            yield StreamPart(P.TEXT_START, id=tid)
            for word in _words(reply.text):
                yield StreamPart(P.TEXT_DELTA, id=tid, delta=word)
            yield StreamPart(P.TEXT_END, id=tid)
        for k, (name, args) in enumerate(reply.tool_calls):
            cid = f"call_{n}_{k}"
            yield StreamPart(P.TOOL_INPUT_START, id=cid, tool_call_name=name)
            yield StreamPart(P.TOOL_INPUT_DELTA, id=cid, delta=args)
            yield StreamPart(P.TOOL_INPUT_END, id=cid)
            yield StreamPart(P.TOOL_CALL, id=cid, tool_call_name=name, tool_call_input=args)
        prompt_tokens = sum(len(t.split()) for t in _texts(call.prompt))
        output_tokens = len(reply.text.split()) + len(reply.reasoning.split())
        yield StreamPart(
            P.FINISH,
            finish_reason=FinishReason.TOOL_CALLS if reply.tool_calls else FinishReason.STOP,
            usage=Usage(
                input_tokens=prompt_tokens,
                output_tokens=output_tokens,
                total_tokens=prompt_tokens + output_tokens,
            ),
        )


_WEB_SEARCH = "scripted.web_search"


def _web_search(call_id: str, query: str) -> Iterator[StreamPart]:
    """A provider-executed web search and its result, with two made-up sources."""
    args = json.dumps({"query": query})
    q = urllib.parse.quote_plus(query)
    sources = [
        {"url": f"https://example.com/search?q={q}", "title": f"Results for {query}"},
        {"url": f"https://example.org/wiki/{q}", "title": f"{query} - Example wiki"},
    ]
    yield StreamPart(
        P.TOOL_INPUT_START, id=call_id, tool_call_name="web_search", provider_executed=True
    )
    yield StreamPart(P.TOOL_INPUT_DELTA, id=call_id, delta=args)
    yield StreamPart(P.TOOL_INPUT_END, id=call_id)
    yield StreamPart(
        P.TOOL_CALL,
        id=call_id,
        tool_call_name="web_search",
        tool_call_input=args,
        provider_executed=True,
    )
    yield StreamPart(
        P.TOOL_RESULT,
        id=call_id,
        tool_call_name="web_search",
        provider_executed=True,
        provider_metadata={"sources": sources},
    )


def _words(text: str) -> Iterator[str]:
    """Word-sized deltas that join back to exactly `text`, cut as they are played (a long
    reply is never split into a list of words up front)."""
    start = 0
    while (space := text.find(" ", start + 1)) >= 0:
        yield text[start:space]
        start = space
    yield text[start:]


def _texts(messages: Sequence[Message]) -> list[str]:
    return [p.text for m in messages for p in m.content if isinstance(p, TextPart)]


def _last_user(messages: Sequence[Message]) -> Message | None:
    return next((m for m in reversed(messages) if m.role == Role.USER), None)


def _last_user_text(messages: Sequence[Message]) -> str:
    message = _last_user(messages)
    parts = message.content if message is not None else []
    return " ".join(p.text for p in parts if isinstance(p, TextPart))


def _last_user_files(messages: Sequence[Message]) -> list[FilePart]:
    message = _last_user(messages)
    return [p for p in message.content if isinstance(p, FilePart)] if message else []


def _tool_results_this_turn(messages: Sequence[Message]) -> list[ToolResultPart]:
    results: list[ToolResultPart] = []
    for message in reversed(messages):
        if message.role == Role.USER:
            break
        results.extend(p for p in reversed(message.content) if isinstance(p, ToolResultPart))
    return results[::-1]


def _describe(result: ToolResultPart) -> str:
    """A tool result in a few words, for the default reply."""
    output = result.output
    if isinstance(output, ToolResultText):
        return output.text
    if isinstance(output, ToolResultError):
        return f"an error ({output.error})" if output.error else "an error"
    return _describe_other(output)


def _answer(result: ToolResultPart) -> str:
    """The reply to a `/call`: the result's own text, or its error's."""
    output, name = result.output, result.tool_name or "the tool"
    if isinstance(output, ToolResultText):
        return output.text or f"{name} returned no text."
    if isinstance(output, ToolResultError):
        return f"{name} failed: {output.error or 'no detail given'}"
    return f"{name} returned {_describe_other(output)}."


def _describe_other(output: ToolResultOutput | None) -> str:
    if isinstance(output, ToolResultMedia):
        # Decoded size of the base64 text (4 characters carry 3 bytes; padding carries none).
        size = len(output.data.rstrip("=")) * 3 // 4
        media = f"{output.media_type or 'media'} ({size} bytes)"
        return f"{media}: {output.text}" if output.text else media
    return "no output"


@dataclass(frozen=True, slots=True)
class _CallDirective:
    """`/call TOOL {JSON}` parsed; `problem` is the reply when it cannot be obeyed."""

    tool: str = ""
    arguments: str = "{}"
    problem: str = ""


_DIRECTIVE = "/call"
_DIRECTIVE_USAGE = 'Use: /call TOOL_NAME {JSON arguments}, e.g. /call execute {"command": "ls"}.'


def _parse_call_directives(text: str) -> list[_CallDirective]:
    """The message as one directive, or as several, one per line; [] otherwise."""
    single = _parse_call_directive(text)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        several = [_parse_call_directive(line) for line in lines]
        if all(d is not None and not d.problem for d in several):
            return [d for d in several if d is not None]
    return [single] if single is not None else []


def _parse_call_directive(text: str) -> _CallDirective | None:
    """The directive when the whole message is one, else `None` (an ordinary message)."""
    text = text.strip()
    rest = text.removeprefix(_DIRECTIVE)
    if rest == text or (rest and not rest[0].isspace()):
        return None  # not `/call`, or a word such as `/callback`
    words = rest.split(maxsplit=1)
    tool = words[0] if words else ""
    arguments = words[1].strip() if len(words) > 1 else ""
    if not tool:
        return _CallDirective(problem=f"/call needs a tool name. {_DIRECTIVE_USAGE}")
    if not arguments:
        return _CallDirective(tool=tool)
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as err:
        return _CallDirective(
            tool=tool,
            problem=f"/call {tool}: the arguments are not valid JSON ({err}). {_DIRECTIVE_USAGE}",
        )
    if not isinstance(parsed, dict):
        return _CallDirective(
            tool=tool,
            problem=f"/call {tool}: the arguments must be a JSON object, not "
            f"{_json_kind(parsed)} ({arguments}). {_DIRECTIVE_USAGE}",
        )
    # The text as the user wrote it: re-serialising could reorder keys or change numbers.
    return _CallDirective(tool=tool, arguments=arguments)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"


# The default first call: one that succeeds in a fresh workspace and shows where it ran.
_EXECUTE_ARGS = {"command": 'echo "hello from $(pwd)" && uname -sr && id -u'}
_WRITE_FILE_ARGS = {"path": "hello.txt", "content": "hello from chatd's scripted model\n"}


def _first_call(tools: Sequence[ToolDefinition]) -> tuple[str, str]:
    """The default turn's one tool call: `execute`, else `write_file`, else the first tool."""
    names = {t.name for t in tools}
    if "execute" in names:
        return "execute", json.dumps(_EXECUTE_ARGS)
    if "write_file" in names:
        return "write_file", json.dumps(_WRITE_FILE_ARGS)
    return tools[0].name, json.dumps(_example_args(tools[0].input_schema))


def _example_args(schema: dict[str, object]) -> dict[str, object]:
    """Plausible arguments for a JSON schema: required string fields get a sample value."""
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, dict) or not isinstance(required, list):
        return {}
    args: dict[str, object] = {}
    for name in required:
        spec = properties.get(name)
        kind = spec.get("type") if isinstance(spec, dict) else None
        args[str(name)] = {"integer": 1, "number": 1, "boolean": True}.get(str(kind), "example")
    return args
