"""A live replica and the official `openai` SDK pointed at its /v1 routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from tests.service.conftest import LiveReplica, running_replica

# A reply streamed at 20 ms a word: long enough to read half of it, drop, resume.
SLOW = {"delta_delay": 0.02}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveReplica]:
    async with running_replica(tmp_path) as replica:
        await replica.scripted_model("slow", **SLOW)
        yield replica


def sdk(url: str, token: str) -> openai.AsyncOpenAI:
    """The SDK as an application configures it for chatd (no retries: tests see every
    answer as it is)."""
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=30)


@pytest.fixture
async def client(live: LiveReplica) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(live.url, await live.token("ann")) as client:
        yield client
