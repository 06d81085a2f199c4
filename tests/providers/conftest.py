"""Fixtures for provider tests: the replay server on 127.0.0.1 and a clean key environment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.providers.replay import ReplayServer

PROVIDER_KEY_ENVS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENROUTER_API_KEY",
)


@pytest.fixture
async def server() -> AsyncIterator[ReplayServer]:
    replay = ReplayServer()
    await replay.start()
    yield replay
    await replay.stop()


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real keys must never reach a test."""
    for name in PROVIDER_KEY_ENVS:
        monkeypatch.delenv(name, raising=False)
