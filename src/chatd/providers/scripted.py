"""`scripted`: a deterministic, offline model for demos, `make run` and tests.

It streams replies from a script of `ScriptedReply` entries (text, reasoning, tool
calls, pauses, injected provider errors, mid-stream disconnects). Without a script
it answers any message with a short reply and, when tools are offered and none has
run yet this turn, calls the first tool once before answering. No network, no keys.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chatd.loop import Call, GenerateResponse
from chatd.titles import TITLE_PROMPT
from chatd.types import (
    FinishReason,
    Message,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
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
    # two replicas at once.
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
        """Call the first offered tool once per turn, then answer in a sentence or two."""
        last_user = _last_user_text(call.prompt)
        results = _tool_results_this_turn(call.prompt)
        if call.tools and not results:
            tool = call.tools[0]
            return ScriptedReply(
                reasoning=f"The user asked: {last_user!r}. I will call {tool.name} first.",
                text="Let me check that.",
                tool_calls=[(tool.name, json.dumps(_example_args(tool.input_schema)))],
                delta_delay=self.delta_delay,
            )
        if results:
            return ScriptedReply(
                text=f"The tool answered: {results[-1]}. That is all I needed to reply "
                f"to {last_user!r}.",
                delta_delay=self.delta_delay,
            )
        return ScriptedReply(
            reasoning="A short, friendly answer will do.",
            text=f"You said: {last_user!r}. I am chatd's offline scripted model, so this is "
            "a canned reply — configure a real provider to get real answers.",
            delta_delay=self.delta_delay,
        )

    def _log_call(self, call: Call, phase: str) -> None:
        if self.call_log is None:
            return
        line = json.dumps(
            {
                "caller": self.caller,
                "pid": os.getpid(),
                "user": _last_user_text(call.prompt),
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


def _last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == Role.USER:
            return " ".join(p.text for p in message.content if isinstance(p, TextPart))
    return ""


def _tool_results_this_turn(messages: Sequence[Message]) -> list[str]:
    results: list[str] = []
    for message in reversed(messages):
        if message.role == Role.USER:
            break
        for part in message.content:
            if isinstance(part, ToolResultPart):
                output = part.output
                results.append(output.text if isinstance(output, ToolResultText) else "an error")
    return results[::-1]


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
