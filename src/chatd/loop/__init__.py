"""The agent loop as a library: `await chatd.loop.run(RunOptions(...))`.

It streams a model step, runs the step's tool calls, hands the finished step to
your `persist_step` callback, and repeats while the model asks for tools. It knows
nothing about HTTP or databases, nor any provider: a model's quirks reach it only
through the optional hooks of the `Model` protocol (`chatd.protocols`, re-exported
here). The chatd service is one user of it.
"""

from chatd.loop._clock import Clock, ManualClock, SystemClock
from chatd.loop._errors import (
    ChatInterrupted,
    DynamicToolCall,
    Interrupt,
    PersistStepError,
    StartupTimeout,
    StopAfterTool,
    StreamError,
)
from chatd.loop._history import find_context_limit, to_response_messages
from chatd.loop._model import FakeModel, stream_from_parts
from chatd.loop._run import PendingToolCall, PersistedStep, RunOptions, RunOutcome, run
from chatd.loop.metrics import Metrics, NopMetrics, estimate_prompt_size, tool_result_size
from chatd.protocols import (
    MODEL_HOOKS,
    Call,
    GenerateResponse,
    Model,
    ModelHooks,
    ModelSettings,
    ProviderTool,
    Tool,
    ToolCall,
    ToolDefinition,
    ToolResponse,
)

__all__ = [
    "MODEL_HOOKS",
    "Call",
    "ChatInterrupted",
    "Clock",
    "DynamicToolCall",
    "FakeModel",
    "GenerateResponse",
    "Interrupt",
    "ManualClock",
    "Metrics",
    "Model",
    "ModelHooks",
    "ModelSettings",
    "NopMetrics",
    "PendingToolCall",
    "PersistStepError",
    "PersistedStep",
    "ProviderTool",
    "RunOptions",
    "RunOutcome",
    "StartupTimeout",
    "StopAfterTool",
    "StreamError",
    "SystemClock",
    "Tool",
    "ToolCall",
    "ToolDefinition",
    "ToolResponse",
    "estimate_prompt_size",
    "find_context_limit",
    "run",
    "stream_from_parts",
    "to_response_messages",
    "tool_result_size",
]
