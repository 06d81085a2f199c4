"""Google Gemini over the official `google-genai` SDK.

Turns `aio.models.generate_content_stream` into chatd `StreamPart`s: text,
thought summaries as reasoning (with their thought signatures kept for the next
turn), function calls (Gemini sends each whole, so a call streams as one input
delta), search grounding, usage with cached and thought tokens, and finish reasons.
Grounding (the `google_search` tool, offered for a `google.google_search` provider
tool) becomes one provider-executed `web_search` call and result per response, after
its text: the queries are the call's input, the grounding chunks' pages its sources.
Grounding cannot go back to Gemini, so no provider-executed part (this provider's
or another's) is in the next request. SDK exceptions become classified errors in
`_map_errors()` only, including the RetryInfo delay Google puts in 429 bodies; the
SDK's retries stay off.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from chatd.errors import ErrorKind, with_classification
from chatd.protocols import Call, ToolDefinition
from chatd.providers._common import (
    SDKModel,
    classified,
    file_text,
    finish_metadata,
    parse_tool_input,
    result_text,
    transport_failure,
    truncated_stream,
)
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
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    Usage,
)

__all__ = ["GoogleModel", "to_google_contents"]

P = StreamPartType
_KEY = "google"

_FINISH_REASONS = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
}
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GoogleModel(SDKModel[genai.Client]):
    key_envs = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

    def _make_client(self, api_key: str) -> genai.Client:
        options = genai_types.HttpOptions(
            timeout=int(self.config.timeout * 1000), headers=dict(self.config.headers) or None
        )
        if self.config.base_url:
            options.base_url = self.config.base_url
        return genai.Client(api_key=api_key, vertexai=False, http_options=options)

    async def _close_client(self, client: genai.Client) -> None:
        await client.aio.aclose()

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        client = self.client()
        contents, config = self.request(call)
        # Typed, not dicts: the SDK only renames fields (to camelCase) on its own models.
        typed_contents = [genai_types.Content.model_validate(c) for c in contents]
        typed_config = genai_types.GenerateContentConfig.model_validate(config)
        with _map_errors(self.provider):
            response = await client.aio.models.generate_content_stream(
                model=self.config.model, contents=typed_contents, config=typed_config
            )
        return self._parts(response)

    def request(self, call: Call) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The `contents` and `config` of `generate_content_stream` for `call`."""
        settings = call.settings
        system, contents = to_google_contents(call.prompt)
        config: dict[str, Any] = {}
        if system:
            config["system_instruction"] = system
        functions = [_function(t) for t in call.tools if not t.provider_type]
        tools: list[dict[str, Any]] = []
        if functions:
            # Offered even with choice "none": history holding tool calls needs them.
            tools.append({"function_declarations": functions})
            config["tool_config"] = {"function_calling_config": _calling_config(call.tool_choice)}
        tools += [
            {kind: dict(t.provider_args)}
            for t in call.tools
            if (kind := t.provider_defined_type(_KEY)) is not None
        ]
        if tools:
            config["tools"] = tools
        names = {"max_output_tokens": settings.max_output_tokens}
        for name in ("temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty"):
            names[name] = getattr(settings, name)
        config.update({k: v for k, v in names.items() if v is not None})
        config.update(self.extra_body(call, _KEY))
        return contents, config

    async def _parts(
        self, response: AsyncIterator[genai_types.GenerateContentResponse]
    ) -> AsyncIterator[StreamPart]:
        translator = _ChunkTranslator()
        try:
            with _map_errors(self.provider):
                async for chunk in response:
                    for part in translator.feed(chunk):
                        yield part
            if translator.finish_reason is None:
                raise truncated_stream(self.provider, "google stream closed before a finish reason")
            for part in translator.close():
                yield part
            yield StreamPart(
                P.FINISH,
                finish_reason=translator.finish_reason,
                usage=translator.usage,
                provider_metadata=finish_metadata(
                    self.config,
                    _KEY,
                    response_id=translator.response_id,
                    model_version=translator.model_version,
                ),
            )
        finally:
            aclose = getattr(response, "aclose", None)
            if aclose is not None:
                await aclose()


class _ChunkTranslator:
    """Generate-content chunks in, stream parts out; one per streamed response."""

    def __init__(self) -> None:
        self.finish_reason: FinishReason | None = None
        self.usage = Usage()
        self.response_id = ""
        self.model_version = ""
        self._open: tuple[str, str] | None = None  # (kind, block id) of the open block
        self._signature = ""
        self._blocks = itertools.count()
        self._called = False
        self._grounding: genai_types.GroundingMetadata | None = None

    def feed(self, chunk: genai_types.GenerateContentResponse) -> list[StreamPart]:
        parts: list[StreamPart] = []
        self.response_id = chunk.response_id or self.response_id
        self.model_version = chunk.model_version or self.model_version
        if chunk.usage_metadata is not None:
            self.usage = _usage(chunk.usage_metadata)
        for candidate in (chunk.candidates or [])[:1]:
            content = candidate.content
            for part in (content.parts if content is not None else None) or []:
                parts += self._part(part)
            if candidate.grounding_metadata is not None:
                self._grounding = candidate.grounding_metadata
            if candidate.finish_reason is not None:
                reason = str(getattr(candidate.finish_reason, "value", candidate.finish_reason))
                self.finish_reason = _FINISH_REASONS.get(reason, FinishReason.OTHER)
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            self.finish_reason = FinishReason.CONTENT_FILTER
        return parts

    def _part(self, part: genai_types.Part) -> list[StreamPart]:
        signature = _b64(part.thought_signature)
        if part.function_call is not None:
            parts = self._close_block()
            parts += self._function_call(part.function_call, signature)
            return parts
        if part.text is None:
            return []
        kind = "reasoning" if part.thought else "text"
        parts = []
        if self._open is None or self._open[0] != kind:
            parts += self._close_block()
            block_id = f"{kind}-{next(self._blocks)}"
            self._open = (kind, block_id)
            parts.append(
                StreamPart(P.REASONING_START if part.thought else P.TEXT_START, id=block_id)
            )
        if signature:
            self._signature = signature
        if part.text:
            delta = P.REASONING_DELTA if part.thought else P.TEXT_DELTA
            parts.append(StreamPart(delta, id=self._open[1], delta=part.text))
        return parts

    def _function_call(self, call: genai_types.FunctionCall, signature: str) -> list[StreamPart]:
        self._called = True
        # Gemini often sends no id; chatd needs one per call to pair the result.
        call_id = call.id or f"call-{secrets.token_hex(6)}"
        name = call.name or ""
        arguments = json.dumps(call.args or {})
        # Gemini's own id (when it sent one) and the thought signature go back with the call.
        metadata = {
            _KEY: {k: v for k, v in (("id", call.id), ("thought_signature", signature)) if v}
        }
        return [
            StreamPart(P.TOOL_INPUT_START, id=call_id, tool_call_name=name),
            StreamPart(P.TOOL_INPUT_DELTA, id=call_id, delta=arguments),
            StreamPart(P.TOOL_INPUT_END, id=call_id),
            StreamPart(
                P.TOOL_CALL,
                id=call_id,
                tool_call_name=name,
                tool_call_input=arguments,
                provider_metadata=metadata if metadata[_KEY] else None,
            ),
        ]

    def _close_block(self) -> list[StreamPart]:
        if self._open is None:
            return []
        kind, block_id = self._open
        self._open = None
        metadata = {_KEY: {"thought_signature": self._signature}} if self._signature else None
        self._signature = ""
        end = P.REASONING_END if kind == "reasoning" else P.TEXT_END
        return [StreamPart(end, id=block_id, provider_metadata=metadata)]

    def close(self) -> list[StreamPart]:
        parts = self._close_block()
        if self._grounding is not None:
            parts += _grounding_parts(self._grounding, self.response_id)
        if self._called and self.finish_reason == FinishReason.STOP:
            self.finish_reason = FinishReason.TOOL_CALLS  # Gemini says STOP after calls
        return parts


def _grounding_parts(
    grounding: genai_types.GroundingMetadata, response_id: str
) -> list[StreamPart]:
    """A grounded response's search: a provider-executed `web_search` call (its queries)
    and result (the grounding chunks' pages as sources); nothing when it searched nothing."""
    queries = grounding.web_search_queries or []
    webs = [c.web for c in grounding.grounding_chunks or [] if c.web is not None and c.web.uri]
    if not queries and not webs:
        return []
    call_id = f"search-{response_id or secrets.token_hex(6)}"
    arguments = json.dumps({"queries": queries})
    sources = [{"url": w.uri or "", "title": w.title or w.domain or ""} for w in webs]
    found: dict[str, Any] = {
        _KEY: {"grounding_metadata": grounding.model_dump(mode="json", exclude_none=True)},
        "sources": sources,
    }
    return [
        StreamPart(
            P.TOOL_CALL,
            id=call_id,
            tool_call_name="web_search",
            tool_call_input=arguments,
            provider_executed=True,
        ),
        StreamPart(
            P.TOOL_RESULT,
            id=call_id,
            tool_call_name="web_search",
            provider_executed=True,
            provider_metadata=found,
        ),
    ]


def _usage(usage: genai_types.GenerateContentResponseUsageMetadata) -> Usage:
    prompt = usage.prompt_token_count or 0
    cached = usage.cached_content_token_count or 0
    thoughts = usage.thoughts_token_count or 0
    output = (usage.candidates_token_count or 0) + thoughts
    return Usage(
        # The prompt count includes cached tokens; chatd keeps them apart.
        input_tokens=max(prompt - cached, 0),
        output_tokens=output,
        total_tokens=usage.total_token_count or prompt + output,
        reasoning_tokens=thoughts,
        cache_read_tokens=cached,
    )


def _b64(data: bytes | None) -> str:
    return base64.b64encode(data).decode("ascii") if data else ""


# --- prompt conversion ------------------------------------------------------------------


def to_google_contents(prompt: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """chatd messages → (system instruction, contents); same-role neighbours are merged."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    # Tool call id → (function name, Gemini's own id or ""), for the responses.
    names: dict[str, tuple[str, str]] = {}
    for message in prompt:
        if message.role == Role.SYSTEM:
            system += [p.text for p in message.content if isinstance(p, TextPart)]
            continue
        role = "model" if message.role == Role.ASSISTANT else "user"
        parts = [p for part in message.content for p in _parts(part, names)]
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _parts(part: Any, names: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    if isinstance(part, TextPart):
        out: dict[str, Any] = {"text": part.text}
        return [_signed(out, part.provider_metadata)] if part.text else []
    if isinstance(part, ReasoningPart):
        return [_signed({"text": part.text, "thought": True}, part.provider_metadata)]
    if isinstance(part, FilePart):
        text = file_text(part)
        if text is not None:
            return [{"text": text}]
        return [{"inline_data": {"mime_type": part.media_type, "data": part.data}}]
    if isinstance(part, ToolCallPart | ToolResultPart) and part.provider_executed:
        return []  # run by a provider (a search): nothing Gemini can take back
    if isinstance(part, ToolCallPart):
        gemini_id = str(_metadata(part.provider_metadata).get("id") or "")
        names[part.tool_call_id] = (part.tool_name, gemini_id)
        call: dict[str, Any] = {"name": part.tool_name, "args": parse_tool_input(part.input)}
        if gemini_id:
            call["id"] = gemini_id
        return [_signed({"function_call": call}, part.provider_metadata)]
    if isinstance(part, ToolResultPart):
        return _function_response(part, names)
    return []


def _metadata(provider_metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = provider_metadata.get(_KEY)
    return metadata if isinstance(metadata, Mapping) else {}


def _signed(part: dict[str, Any], provider_metadata: Mapping[str, Any]) -> dict[str, Any]:
    signature = _metadata(provider_metadata).get("thought_signature")
    if signature:
        part["thought_signature"] = base64.b64decode(signature)
    return part


def _function_response(
    part: ToolResultPart, names: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    name, gemini_id = names.get(part.tool_call_id, (part.tool_name, ""))
    key = "error" if isinstance(part.output, ToolResultError) else "output"
    response: dict[str, Any] = {"name": name, "response": {key: result_text(part.output)}}
    if gemini_id:
        response["id"] = gemini_id
    parts: list[dict[str, Any]] = [{"function_response": response}]
    if isinstance(part.output, ToolResultMedia):
        data = base64.b64decode(part.output.data)
        parts.append({"inline_data": {"mime_type": part.output.media_type, "data": data}})
    return parts


def _function(tool: ToolDefinition) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name, "parameters_json_schema": tool.input_schema}
    if tool.description:
        declaration["description"] = tool.description
    return declaration


def _calling_config(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "required":
        return {"mode": "ANY"}
    if choice == "none":
        return {"mode": "NONE"}
    return {"mode": "ANY", "allowed_function_names": [choice]}


# --- errors -----------------------------------------------------------------------------


@contextlib.contextmanager
def _map_errors(provider: str) -> Iterator[None]:
    """The SDK's exceptions → classified errors carrying the HTTP status; nothing else."""
    try:
        yield
    except genai_errors.APIError as err:
        status = err.code if isinstance(err.code, int) else 0
        found = classified(err, provider, status_code=status, retry_after=_retry_delay(err))
        if _bad_key(err) and found.classified.kind != ErrorKind.AUTH:
            # Gemini answers a wrong key with 400 API_KEY_INVALID, not 401.
            auth = dataclasses.replace(
                found.classified, kind=ErrorKind.AUTH, retryable=False, message=""
            )
            found = with_classification(err, auth)
        raise found from err
    except httpx2.TimeoutException as err:
        raise classified(err, provider) from err
    except httpx2.TransportError as err:
        raise transport_failure(err, provider) from err


def _bad_key(err: genai_errors.APIError) -> bool:
    return err.status == "UNAUTHENTICATED" or "API_KEY_INVALID" in json.dumps(
        err.details, default=str
    )


def _retry_delay(err: genai_errors.APIError) -> float:
    """The `google.rpc.RetryInfo` delay ("7s") of an error body, in seconds."""
    details = err.details if isinstance(err.details, Mapping) else {}
    error = details.get("error", details)
    for item in error.get("details", []) if isinstance(error, Mapping) else []:
        if isinstance(item, Mapping) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = _RETRY_DELAY.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return 0.0
