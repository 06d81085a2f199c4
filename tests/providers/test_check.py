"""Model configs from TOML and the one-request model check."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatd.errors import ErrorKind
from chatd.providers import ModelConfig, check_model, load_model_configs, resolve
from chatd.types import FinishReason
from tests.providers.helpers import HELLO as HELLO_CALL
from tests.providers.replay import ReplayServer

MODELS_TOML = """
[models.gpt]
spec = "openai:gpt-5"
provider_options = { reasoning = { effort = "low", summary = "auto" } }

[models.local]
provider = "Ollama"
model = "qwen3:8b"
base_url = "http://gpu-box:11434/v1"
context_limit = 32768

[models.claude]
spec = "anthropic:claude-sonnet-5"
api_key_env = "TEAM_ANTHROPIC_KEY"
"""


def test_model_configs_load_from_toml_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(MODELS_TOML)
    configs = load_model_configs(path)
    assert list(configs) == ["gpt", "local", "claude"]
    assert configs["gpt"] == ModelConfig(
        "openai", "gpt-5", provider_options={"reasoning": {"effort": "low", "summary": "auto"}}
    )
    assert configs["local"] == ModelConfig(
        "ollama", "qwen3:8b", base_url="http://gpu-box:11434/v1", context_limit=32768
    )
    assert configs["claude"].api_key_env == "TEAM_ANTHROPIC_KEY"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('model = "gpt-5"', "needs `spec` or both"),
        ('spec = "openai:gpt-5"\napi_token = "x"', "unknown model config field.*api_token"),
        ('spec = "gpt-5"', "provider:model"),
    ],
)
def test_bad_model_configs_name_the_table(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f"[models.broken]\n{table}\n")
    with pytest.raises(ValueError, match=f"models.broken: .*{message}"):
        load_model_configs(path)


async def test_check_reports_the_answer_of_a_working_model(server: ReplayServer) -> None:
    server.enqueue("anthropic", "text")
    config = ModelConfig("anthropic", "claude-sonnet-5", base_url=server.url, api_key="k")
    result = await check_model(resolve(config))
    assert result.ok
    assert (result.text, result.finish_reason) == ("Hello! How can I help?", FinishReason.STOP)
    assert server.requests[0].json()["max_tokens"] == 16


async def test_check_describes_a_failure_with_its_kind_instead_of_raising(
    server: ReplayServer,
) -> None:
    server.enqueue("google", "400_api_key_invalid")
    config = ModelConfig("google", "gemini-2.5-flash", base_url=server.url, api_key="wrong")
    result = await check_model(resolve(config))
    assert not result.ok
    assert result.error is not None
    assert (result.error.kind, result.error.status_code) == (ErrorKind.AUTH, 400)


async def test_check_of_a_model_without_key_is_missing_key() -> None:
    result = await check_model(resolve("openai:gpt-5"))
    assert result.error is not None and result.error.kind == ErrorKind.MISSING_KEY


async def test_generate_assembles_the_stream(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "tool_calls")
    config = ModelConfig("openai-chat", "gpt-4o", base_url=server.url + "/v1", api_key="k")
    model = resolve(config)
    response = await model.generate(HELLO_CALL)
    assert [getattr(p, "tool_name", "") for p in response.content] == ["get_weather", "get_time"]
    assert response.usage.output_tokens == 41
