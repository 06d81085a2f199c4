"""The request bodies of the /v1 routes, in OpenAI's shapes.

They validate shape only; what chatd cannot do with a valid body (a tool type other
than `function`, changing a chat's tools mid-way) the routes refuse with a 400 that
says so. Parameters chatd accepts but does not act on are listed in docs/openai.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatd.api.schemas import MAX_MESSAGE_BYTES, Strict

__all__ = [
    "ChatCompletionRequest",
    "ChatMessageIn",
    "ContentPart",
    "ConversationRef",
    "FunctionCallIn",
    "FunctionCallOutputIn",
    "FunctionTool",
    "InputItem",
    "MessageIn",
    "ReasoningIn",
    "ResponseRequest",
]

# The same rule as chatd's dynamic tools (and OpenAI's function names).
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Text = Annotated[str, Field(max_length=MAX_MESSAGE_BYTES)]


class _Item(BaseModel):
    """An item a client may echo back with fields of its own (`id`, `status`)."""

    model_config = ConfigDict(extra="ignore")


class ContentPart(_Item):
    type: Literal["input_text", "output_text", "text"]
    text: Text


Content = Text | Annotated[list[ContentPart], Field(max_length=256)]


class MessageIn(_Item):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Content


class FunctionCallIn(_Item):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: ToolName
    arguments: Text


class FunctionCallOutputIn(_Item):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: Content


class ReasoningIn(_Item):
    """A reasoning item echoed back from an earlier output: accepted and dropped."""

    type: Literal["reasoning"]


InputItem = Annotated[
    MessageIn | FunctionCallIn | FunctionCallOutputIn | ReasoningIn,
    Field(union_mode="left_to_right"),
]


class FunctionTool(Strict):
    type: Literal["function"]
    name: ToolName
    description: str | None = Field(default=None, max_length=4096)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ConversationRef(Strict):
    id: str = Field(min_length=1, max_length=64)


class ResponseRequest(Strict):
    """`POST /v1/responses`."""

    model: str = Field(min_length=1, max_length=256)
    input: Text | Annotated[list[InputItem], Field(min_length=1, max_length=1000)]
    instructions: str | None = Field(default=None, max_length=65536)
    previous_response_id: str | None = Field(default=None, max_length=64)
    conversation: Annotated[str, Field(max_length=64)] | ConversationRef | None = None
    tools: list[FunctionTool] = Field(default_factory=list, max_length=64)
    tool_choice: Literal["auto"] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    background: bool = False
    store: bool = True
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    # Accepted and echoed, not acted on (docs/openai.md): the model config decides.
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    include: list[str] | None = Field(default=None, max_length=16)
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = Field(default=None, max_length=32)
    stream_options: dict[str, Any] | None = None


class ChatToolCallFunction(_Item):
    name: ToolName
    arguments: Text


class ChatToolCall(_Item):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: ChatToolCallFunction


class ChatMessageIn(_Item):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    tool_calls: list[ChatToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=256)


class StreamOptions(Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(Strict):
    """`POST /v1/chat/completions`."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] | None = None
    # Accepted, not acted on (docs/openai.md).
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    user: str | None = Field(default=None, max_length=256)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
