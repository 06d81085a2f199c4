"""OpenAI's Responses API over the official `openai` SDK, with `previous_response_id` chaining.

Turns a streamed `responses.create` into chatd `StreamPart`s: output text,
reasoning summaries (and raw reasoning text where a server sends it), function
calls with incremental arguments, the built-in web search (`{"type": "web_search"}`,
offered for a `openai.web_search` provider tool) as provider-executed calls and
results with the pages it used, usage and the terminal status. Every part the
model produced carries `{"openai": {"item_id", "response_id"}}` metadata, so the
next step can chain on the stored response and send only what is new. When the
provider has lost that response ("previous response not found", classified
`chain_broken`), this model forgets the chain and the loop's next attempt resends
the full history; a `previous_response_id` the caller put in the provider options
is dropped by the model's `break_response_chain` hook then, and after the run's
first step. SDK exceptions become classified errors in `_map_errors()` only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.responses import ResponseStreamEvent

from chatd.errors import ClassifiedException
from chatd.protocols import Call, ToolDefinition
from chatd.providers._common import (
    SDKModel,
    classified,
    data_url,
    file_text,
    finish_metadata,
    result_text,
    transport_failure,
    truncated_stream,
)
from chatd.providers.openai_chat import stream_error_status
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
    ReasoningPart,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultMedia,
    ToolResultPart,
    Usage,
)

__all__ = ["OpenAIResponsesModel", "ResponsesStreamError", "to_responses_input"]

P = StreamPartType
_KEY = "openai"
# The provider option naming the stored response a request continues.
_PREVIOUS_RESPONSE_ID = "previous_response_id"

_TEXT_PARTS = ("output_text", "refusal")
# Chain positions kept per model: plenty for the chats one worker runs at once.
_REMEMBERED_POSITIONS = 1024
_INCOMPLETE_REASONS = {
    "max_output_tokens": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class ResponsesStreamError(Exception):
    """An `error` event or a `response.failed` status inside a 200 stream."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code
        # Read by chatd.errors as the provider's structured detail.
        self.body = {"message": message, "code": code}


class OpenAIResponsesModel(SDKModel[AsyncOpenAI]):
    """An OpenAI model over the Responses API; chains turns unless `store` is off."""

    key_envs = ("OPENAI_API_KEY",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Response ids the provider no longer knows: never chain on them again.
        self._broken_chains: set[str] = set()
        # Where each response this model produced sits in the prompt: if history was
        # rewritten before it (compaction), the stored chain holds the old context.
        self._positions: dict[str, int] = {}

    def _make_client(self, api_key: str) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key=api_key,
            base_url=self.config.base_url or None,
            max_retries=0,
            timeout=self.config.timeout,
            default_headers=dict(self.config.headers) or None,
        )

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        client = self.client()
        request = self.request(call)
        previous = str(request.get(_PREVIOUS_RESPONSE_ID, ""))
        try:
            with _map_errors(self.provider):
                response = await client.responses.create(**request)
        except ClassifiedException as err:
            self._forget_broken_chain(err, previous)
            raise
        stream = cast("AsyncStream[ResponseStreamEvent]", response)
        return self._parts(stream, previous, len(call.prompt))

    def break_response_chain(self, provider_options: dict[str, Any]) -> dict[str, Any] | None:
        """Model hook: the options without `previous_response_id`; None if they hold none."""
        if not any(
            isinstance(value, dict) and _PREVIOUS_RESPONSE_ID in value
            for value in provider_options.values()
        ):
            return None
        return {
            key: (
                {k: v for k, v in value.items() if k != _PREVIOUS_RESPONSE_ID}
                if isinstance(value, dict)
                else value
            )
            for key, value in provider_options.items()
        }

    def _forget_broken_chain(self, err: ClassifiedException, previous: str) -> None:
        if previous and err.classified.chain_broken:
            self._broken_chains.add(previous)

    def _remember_position(self, response_id: str, index: int) -> None:
        if not response_id:
            return
        self._positions[response_id] = index
        if len(self._positions) > _REMEMBERED_POSITIONS:
            del self._positions[next(iter(self._positions))]

    def request(self, call: Call) -> dict[str, Any]:
        """The keyword arguments of `responses.create` for `call`."""
        settings = call.settings
        extra = self.extra_body(call, _KEY)
        store = extra.get("store", True) is not False
        prompt = call.prompt
        request: dict[str, Any] = {"model": self.config.model, "stream": True}
        if store and (chain := self._chain_point(prompt)) is not None:
            index, response_id = chain
            request[_PREVIOUS_RESPONSE_ID] = response_id
            prompt = prompt[index + 1 :]
        request["input"] = to_responses_input(prompt)
        if not store:
            # Without stored responses, reasoning must travel back encrypted.
            extra.setdefault("include", ["reasoning.encrypted_content"])
        tools = [definition for t in call.tools if (definition := _tool(t)) is not None]
        if tools:
            # Offered even with choice "none": history holding tool calls needs them.
            request["tools"] = tools
            request["tool_choice"] = _tool_choice(call.tool_choice)
        if any(t["type"] == "web_search" for t in tools):
            # The pages a search used come back only when asked for.
            include = [*extra.get("include", ()), "web_search_call.action.sources"]
            extra["include"] = list(dict.fromkeys(include))
        if settings.max_output_tokens is not None:
            request["max_output_tokens"] = settings.max_output_tokens
        for name in ("temperature", "top_p"):
            value = getattr(settings, name)
            if value is not None:
                request[name] = value
        if extra:
            request["extra_body"] = extra
        return request

    def _chain_point(self, prompt: list[Message]) -> tuple[int, str] | None:
        """The last assistant message and the stored response it came from, if chainable."""
        for index in range(len(prompt) - 1, -1, -1):
            message = prompt[index]
            if message.role != Role.ASSISTANT:
                continue
            response_id = _response_id(message)
            if not response_id or response_id in self._broken_chains:
                return None
            if self._positions.get(response_id, index) != index:
                return None
            return index, response_id
        return None

    async def _parts(
        self, response: AsyncStream[ResponseStreamEvent], previous: str, prompt_length: int
    ) -> AsyncIterator[StreamPart]:
        translator = _EventTranslator()
        try:
            with _map_errors(self.provider):
                async for event in response:
                    for part in translator.feed(event):
                        yield part
            if translator.finish_reason is None:
                raise truncated_stream(
                    self.provider, "openai responses stream closed before terminal event"
                )
            self._remember_position(translator.response_id, prompt_length)
            yield StreamPart(
                P.FINISH,
                finish_reason=translator.finish_reason,
                usage=translator.usage,
                provider_metadata=finish_metadata(
                    self.config, _KEY, response_id=translator.response_id
                ),
            )
        except ClassifiedException as err:
            self._forget_broken_chain(err, previous)
            raise
        finally:
            await response.close()


def _response_id(message: Message) -> str:
    for part in reversed(message.content):
        metadata = getattr(part, "provider_metadata", None) or {}
        openai_metadata = metadata.get(_KEY)
        if isinstance(openai_metadata, Mapping) and openai_metadata.get("response_id"):
            return str(openai_metadata["response_id"])
    return ""


class _EventTranslator:
    """Responses stream events in, stream parts out; one per streamed response."""

    def __init__(self) -> None:
        self.response_id = ""
        self.finish_reason: FinishReason | None = None
        self.usage = Usage()
        self._calls: dict[str, tuple[str, str]] = {}  # item id → (call id, name)
        self._reasoning: dict[str, list[str]] = {}  # item id → open reasoning block ids
        self._called = False
        self._refused = False

    def _metadata(self, item_id: str, **extra: Any) -> dict[str, Any]:
        fields = {"item_id": item_id, "response_id": self.response_id, **extra}
        return {_KEY: {k: v for k, v in fields.items() if v}}

    def feed(self, event: Any) -> list[StreamPart]:
        kind = event.type
        if kind == "response.output_text.delta":
            return [StreamPart(P.TEXT_DELTA, id=event.item_id, delta=event.delta)]
        if kind == "response.function_call_arguments.delta":
            call_id, _ = self._calls.get(event.item_id, (event.item_id, ""))
            return [StreamPart(P.TOOL_INPUT_DELTA, id=call_id, delta=event.delta)]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return self._reasoning_delta(event)
        if kind == "response.refusal.delta":
            self._refused = True
            return [StreamPart(P.TEXT_DELTA, id=event.item_id, delta=event.delta)]
        if kind == "response.content_part.added" and event.part.type in _TEXT_PARTS:
            return [StreamPart(P.TEXT_START, id=event.item_id)]
        if kind == "response.content_part.done" and event.part.type in _TEXT_PARTS:
            metadata = self._metadata(event.item_id)
            return [StreamPart(P.TEXT_END, id=event.item_id, provider_metadata=metadata)]
        if kind == "response.reasoning_summary_part.added":
            block_id = f"{event.item_id}:{event.summary_index}"
            self._reasoning.setdefault(event.item_id, []).append(block_id)
            return [StreamPart(P.REASONING_START, id=block_id)]
        if kind == "response.output_item.added":
            return self._item_added(event.item)
        if kind == "response.output_item.done":
            return self._item_done(event.item)
        if kind in ("response.created", "response.in_progress"):
            self.response_id = event.response.id
        elif kind in ("response.completed", "response.incomplete"):
            self._finish(event.response)
        elif kind == "response.failed":
            error = event.response.error
            raise ResponsesStreamError(
                getattr(error, "message", "") or "the response failed",
                getattr(error, "code", "") or "",
            )
        elif kind == "error":
            raise ResponsesStreamError(event.message, event.code or "")
        return []

    def _reasoning_delta(self, event: Any) -> list[StreamPart]:
        if event.type == "response.reasoning_text.delta":
            block_id = f"{event.item_id}:text"
            blocks = self._reasoning.setdefault(event.item_id, [])
            if block_id not in blocks:
                blocks.append(block_id)
                return [
                    StreamPart(P.REASONING_START, id=block_id),
                    StreamPart(P.REASONING_DELTA, id=block_id, delta=event.delta),
                ]
        else:
            block_id = f"{event.item_id}:{event.summary_index}"
        return [StreamPart(P.REASONING_DELTA, id=block_id, delta=event.delta)]

    def _item_added(self, item: Any) -> list[StreamPart]:
        if item.type == "web_search_call":
            return [
                StreamPart(
                    P.TOOL_INPUT_START,
                    id=item.id,
                    tool_call_name="web_search",
                    provider_executed=True,
                )
            ]
        if item.type != "function_call":
            return []
        self._calls[item.id] = (item.call_id, item.name)
        return [StreamPart(P.TOOL_INPUT_START, id=item.call_id, tool_call_name=item.name)]

    def _item_done(self, item: Any) -> list[StreamPart]:
        if item.type == "reasoning":
            # Closed here, not per summary part: the encrypted content comes with the item.
            metadata = self._metadata(item.id, encrypted_content=item.encrypted_content)
            return [
                StreamPart(P.REASONING_END, id=block_id, provider_metadata=metadata)
                for block_id in self._reasoning.pop(item.id, [])
            ]
        if item.type == "web_search_call":
            return _web_search_parts(item, self._metadata(item.id))
        if item.type == "function_call":
            self._called = True
            call_id, name = self._calls.pop(item.id, (item.call_id, item.name))
            return [
                StreamPart(P.TOOL_INPUT_END, id=call_id),
                StreamPart(
                    P.TOOL_CALL,
                    id=call_id,
                    tool_call_name=name,
                    tool_call_input=item.arguments or "{}",
                    provider_metadata=self._metadata(item.id),
                ),
            ]
        return []

    def _finish(self, response: Any) -> None:
        self.response_id = response.id or self.response_id
        if response.usage is not None:
            self.usage = _usage(response.usage)
        details = response.incomplete_details
        if response.status == "incomplete":
            reason = getattr(details, "reason", "") or ""
            self.finish_reason = _INCOMPLETE_REASONS.get(reason, FinishReason.OTHER)
        elif self._refused:
            self.finish_reason = FinishReason.CONTENT_FILTER
        elif self._called:
            self.finish_reason = FinishReason.TOOL_CALLS
        else:
            self.finish_reason = FinishReason.STOP


def _web_search_parts(item: Any, metadata: dict[str, Any]) -> list[StreamPart]:
    """A finished `web_search_call` item: the provider-executed call (its action's
    query) and its result, the item kept to go back as it came, with its sources."""
    action = item.action.model_dump(mode="json", exclude_none=True) if item.action else {}
    arguments = {k: v for k, v in action.items() if k in ("query", "queries", "url", "pattern")}
    sources = [{"url": s["url"], "title": ""} for s in action.get("sources", []) if s.get("url")]
    result_metadata: dict[str, Any] = {
        _KEY: {**metadata[_KEY], "status": item.status, "action": action}
    }
    if sources:
        result_metadata["sources"] = sources
    return [
        StreamPart(P.TOOL_INPUT_END, id=item.id),
        StreamPart(
            P.TOOL_CALL,
            id=item.id,
            tool_call_name="web_search",
            tool_call_input=json.dumps(arguments),
            provider_executed=True,
            provider_metadata=metadata,
        ),
        StreamPart(
            P.TOOL_RESULT,
            id=item.id,
            tool_call_name="web_search",
            provider_executed=True,
            provider_metadata=result_metadata,
        ),
    ]


def _usage(usage: Any) -> Usage:
    cached = getattr(usage.input_tokens_details, "cached_tokens", 0) or 0
    reasoning = getattr(usage.output_tokens_details, "reasoning_tokens", 0) or 0
    return Usage(
        # input_tokens counts the cached ones too; chatd keeps them apart.
        input_tokens=max(usage.input_tokens - cached, 0),
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        reasoning_tokens=reasoning,
        cache_read_tokens=cached,
    )


# --- prompt conversion ------------------------------------------------------------------


def to_responses_input(prompt: list[Message]) -> list[dict[str, Any]]:
    """chatd messages → Responses input items."""
    items: list[dict[str, Any]] = []
    for message in prompt:
        if message.role == Role.SYSTEM:
            text = "\n\n".join(p.text for p in message.content if isinstance(p, TextPart))
            items.append({"role": "system", "content": text})
        elif message.role == Role.USER:
            items.append({"role": "user", "content": _user_content(message)})
        elif message.role == Role.ASSISTANT:
            items += _assistant_items(message)
        else:
            items += [_tool_output(p) for p in message.content if isinstance(p, ToolResultPart)]
    return items


def _user_content(message: Message) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, FilePart):
            text = file_text(part)
            if text is not None:
                content.append({"type": "input_text", "text": text})
            else:
                content.append(_file_input(part.media_type, part.data, part.filename))
    return content


def _file_input(media_type: str, data: bytes | str, filename: str = "") -> dict[str, Any]:
    url = data_url(media_type, data)
    if media_type.startswith("image/"):
        return {"type": "input_image", "image_url": url}
    return {"type": "input_file", "filename": filename or "attachment", "file_data": url}


def _assistant_items(message: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    reasoning: dict[str, dict[str, Any]] = {}
    for part in message.content:
        if isinstance(part, TextPart) and part.text:
            items.append({"role": "assistant", "content": part.text})
        elif isinstance(part, ReasoningPart):
            _add_reasoning(items, reasoning, part)
        elif isinstance(part, ToolResultPart) and part.provider_executed:
            items += _web_search_item(part)
        elif isinstance(part, ToolCallPart) and not part.provider_executed:
            items.append(
                {
                    "type": "function_call",
                    "call_id": part.tool_call_id,
                    "name": part.tool_name,
                    "arguments": part.input or "{}",
                }
            )
    return items


def _add_reasoning(
    items: list[dict[str, Any]], seen: dict[str, dict[str, Any]], part: ReasoningPart
) -> None:
    # Reasoning goes back only as the encrypted item OpenAI gave us: a bare id would
    # point at a stored response that may be gone. Summaries of one item are merged.
    metadata = part.provider_metadata.get(_KEY)
    if not isinstance(metadata, Mapping) or not metadata.get("encrypted_content"):
        return
    item_id = str(metadata.get("item_id", ""))
    item = seen.get(item_id)
    if item is None:
        item = seen[item_id] = {
            "type": "reasoning",
            "id": item_id,
            "summary": [],
            "encrypted_content": metadata["encrypted_content"],
        }
        items.append(item)
    if part.text:
        item["summary"].append({"type": "summary_text", "text": part.text})


def _tool_output(part: ToolResultPart) -> dict[str, Any]:
    output: Any = result_text(part.output)
    if isinstance(part.output, ToolResultMedia):
        output = [_file_input(part.output.media_type, part.output.data)]
        if part.output.text:
            output.append({"type": "input_text", "text": part.output.text})
    return {"type": "function_call_output", "call_id": part.tool_call_id, "output": output}


def _web_search_item(part: ToolResultPart) -> list[dict[str, Any]]:
    """A web search goes back as the `web_search_call` item it was (its call part
    adds nothing); another provider's result, which has no OpenAI item, is left out."""
    metadata = part.provider_metadata.get(_KEY)
    if not isinstance(metadata, Mapping) or not metadata.get("action"):
        return []
    return [
        {
            "type": "web_search_call",
            "id": metadata.get("item_id") or part.tool_call_id,
            "status": metadata.get("status") or "completed",
            "action": metadata["action"],
        }
    ]


def _tool(tool: ToolDefinition) -> dict[str, Any] | None:
    """A function tool, or OpenAI's web search (`openai.web_search`, its settings in
    `provider_args`); another provider's tool is left out."""
    kind = tool.provider_defined_type(_KEY)
    if kind is not None:
        return {**tool.provider_args, "type": kind}
    if tool.provider_type:
        return None
    definition: dict[str, Any] = {
        "type": "function",
        "name": tool.name,
        "parameters": tool.input_schema,
        "strict": False,
    }
    if tool.description:
        definition["description"] = tool.description
    return definition


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "name": choice}


# --- errors -----------------------------------------------------------------------------


@contextlib.contextmanager
def _map_errors(provider: str) -> Iterator[None]:
    """The SDK's exceptions → classified errors carrying the HTTP status; nothing else."""
    try:
        yield
    except openai.APIStatusError as err:
        raise classified(err, provider, status_code=err.status_code) from err
    except openai.APITimeoutError as err:
        raise classified(err, provider) from err
    except openai.APIConnectionError as err:
        raise transport_failure(err, provider) from err
    except openai.APIError as err:
        raise classified(err, provider, status_code=stream_error_status(err.body)) from err
    except ResponsesStreamError as err:
        raise classified(err, provider, status_code=stream_error_status(err.body)) from err
