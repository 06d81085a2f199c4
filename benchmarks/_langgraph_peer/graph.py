"""The LangGraph peer's graph: one chat-model node, the way a LangGraph chat is built.

`PacedChatModel` is a LangChain chat model that streams `parts` tokens, one every `delay`
seconds on a fixed schedule (as chatd's scripted model plays a reply), each token the wall
clock when it was made, after its index: `"7:1764100000.123456 "`. The client measures
latency from the stamp and counts lost or duplicated tokens from the indices. The node
calls the model with `ainvoke`, so LangGraph's `messages` stream mode receives every token
through its callback, as it does from a real provider's model. Nothing here does I/O.

Loaded by `langgraph dev` (`langgraph.json` beside this file), never imported by chatd.
The workload arrives with each run: `config.configurable.parts` and `.delay`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph

PARTS = 60
DELAY = 0.05  # 20 parts/s, as the scripted model in the load test


class PacedChatModel(BaseChatModel):
    """Streams `parts` stamped tokens, one every `delay` seconds."""

    parts: int = PARTS
    delay: float = DELAY

    @property
    def _llm_type(self) -> str:
        return "paced-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # The same paced reply for a synchronous caller (the server itself calls ainvoke).
        chunks = []
        due = time.monotonic()
        for index in range(self.parts):
            chunks.append(ChatGenerationChunk(message=AIMessageChunk(content=_delta(index))))
            due += self.delay
            time.sleep(max(0.0, due - time.monotonic()))
        return generate_from_stream(iter(chunks))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Without a token stream to feed (stream mode `values` alone), the same paced reply.
        chunks = [chunk async for chunk in self._astream(messages, stop, run_manager, **kwargs)]
        return generate_from_stream(iter(chunks))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # langchain-core hands each chunk to the callbacks (LangGraph's messages stream)
        # itself: calling on_llm_new_token here would send every token twice.
        loop = asyncio.get_running_loop()
        due = loop.time()
        for index in range(self.parts):
            yield ChatGenerationChunk(message=AIMessageChunk(content=_delta(index)))
            due += self.delay
            await asyncio.sleep(max(0.0, due - loop.time()))


def _delta(index: int) -> str:
    """A delta the client checks: its index and the wall-clock stamp of its emit."""
    return f"{index}:{time.time():.6f} "


async def reply(state: MessagesState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
    workload = config.get("configurable", {})
    model = PacedChatModel(
        parts=int(workload.get("parts", PARTS)), delay=float(workload.get("delay", DELAY))
    )
    return {"messages": [await model.ainvoke(state["messages"], config)]}


graph = StateGraph(MessagesState).add_node(reply).add_edge(START, "reply").compile()
