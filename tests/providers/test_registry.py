"""The provider registry: lazy SDK imports, spec parsing, presets and config errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatd.errors import ClassifiedException, ErrorKind
from chatd.loop import Call
from chatd.providers import PROVIDERS, InvalidOptions, ModelConfig, resolve
from chatd.providers.openai_chat import OpenAIChatModel
from chatd.providers.scripted import InjectedError, ScriptedModel, ScriptedReply
from tests.providers.helpers import drain
from tests.providers.replay import ReplayServer


def test_importing_chatd_and_its_providers_package_imports_no_sdk() -> None:
    code = (
        "import sys, chatd, chatd.loop, chatd.providers, chatd.providers.scripted\n"
        "chatd.providers.resolve('scripted:default')\n"
        "loaded = [m for m in ('openai', 'anthropic', 'google.genai') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolving_a_provider_imports_only_its_sdk() -> None:
    code = (
        "import sys, chatd.providers\n"
        "chatd.providers.resolve('openai-chat:gpt-4o')\n"
        "assert 'openai' in sys.modules\n"
        "assert 'anthropic' not in sys.modules and 'google.genai' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_parsing_keeps_colons_in_the_model_name() -> None:
    config = ModelConfig.parse("Ollama:qwen3:8b")
    assert (config.provider, config.model) == ("ollama", "qwen3:8b")
    assert config.spec == "ollama:qwen3:8b"


@pytest.mark.parametrize("spec", ["gpt-4o", ":gpt-4o", "openai:", ""])
def test_malformed_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="provider:model"):
        ModelConfig.parse(spec)


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown provider 'nope'.*ollama"):
        resolve("nope:model")


def test_openai_compat_needs_a_base_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        resolve("openai-compat:my-model")


def test_presets_fill_in_the_local_server_url() -> None:
    model = resolve("ollama:llama3.2")
    assert isinstance(model, OpenAIChatModel)
    assert model.provider == "openai-compat"
    assert model.config.base_url == "http://localhost:11434/v1"
    explicit = resolve(
        "ollama:llama3.2", config=ModelConfig("", "", base_url="http://gpu:11434/v1")
    )
    assert isinstance(explicit, OpenAIChatModel)
    assert explicit.config.base_url == "http://gpu:11434/v1"


def test_scripted_resolves_to_the_offline_model() -> None:
    model = resolve("scripted:demo")
    assert isinstance(model, ScriptedModel)
    assert (model.provider, model.model) == ("scripted", "demo")


def test_scripted_options_build_the_scripted_model() -> None:
    options = {
        "delta_delay": 0.01,
        "stamp_deltas": True,
        "script": [
            {"reasoning": "r", "text": "t", "first_part_delay": 1, "tool_calls": [["a", "{}"]]},
            {"error": {"status_code": 503, "message": "down", "retry_after": 2, "after_parts": 3}},
        ],
    }
    model = resolve(ModelConfig("scripted", "demo", provider_options=options))
    assert isinstance(model, ScriptedModel) and model.stamp_deltas
    assert list(model.script) == [
        ScriptedReply("t", "r", [("a", "{}")], first_part_delay=1.0, delta_delay=0.01),
        ScriptedReply(tool_calls=[], error=InjectedError(503, "down", 2.0, 3), delta_delay=0.01),
    ]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delta_delay": float("nan")}, "options.delta_delay"),
        ({"delta_delay": -1}, "options.delta_delay"),
        ({"stamp_deltas": "yes"}, "options.stamp_deltas"),
        ({"script": ["hi"]}, "options.script[0]"),
        ({"script": [{"text": 1}]}, "options.script[0].text"),
        ({"script": [{}, {"tool_calls": [["t", 5]]}]}, "options.script[1].tool_calls[0][1]"),
        ({"script": [{"error": {"after_parts": 1.5}}]}, "options.script[0].error.after_parts"),
    ],
)
def test_scripted_options_it_cannot_use_name_the_field(
    options: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidOptions) as raised:
        resolve(ModelConfig("scripted", "demo", provider_options=options))
    assert raised.value.field == field and str(raised.value).startswith(f"{field}: ")


def test_a_full_config_resolves_without_a_spec_string() -> None:
    model = resolve(ModelConfig("openai-chat", "gpt-4o", api_key="k", context_limit=1000))
    assert (model.provider, model.model) == ("openai", "gpt-4o")


def test_every_registry_entry_names_an_importable_model_class() -> None:
    import importlib

    for name, entry in PROVIDERS.items():
        cls = getattr(importlib.import_module(entry.module), entry.cls)
        assert callable(cls), name


def test_config_repr_hides_the_api_key() -> None:
    assert "sk-secret" not in repr(ModelConfig("openai", "gpt-4o", api_key="sk-secret"))


@pytest.mark.parametrize(
    ("spec", "fixtures", "path"),
    [
        ("openrouter:openai/gpt-4o", "openai_chat", "/v1"),
        ("openai:gpt-5", "openai_responses", "/v1"),
        ("anthropic:claude-sonnet-5", "anthropic", ""),
        ("google:gemini-2.5-flash", "google", ""),
    ],
)
async def test_configured_headers_go_with_every_request(
    server: ReplayServer, spec: str, fixtures: str, path: str
) -> None:
    server.enqueue(fixtures, "text" if fixtures != "google" else "answer")
    headers = {"HTTP-Referer": "https://chat.example.com", "X-Title": "chatd"}
    config = ModelConfig("", "", base_url=server.url + path, api_key="k", headers=headers)
    await drain(resolve(spec, config=config))
    sent = server.requests[0].headers
    assert (sent["http-referer"], sent["x-title"]) == ("https://chat.example.com", "chatd")


async def test_a_config_that_owns_its_key_never_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "the-server-s-own-key")
    config = ModelConfig("anthropic", "claude-sonnet-5", key_from_env=False)
    assert config.resolve_api_key(("ANTHROPIC_API_KEY",)) == ""
    model = resolve(config)
    with pytest.raises(ClassifiedException) as raised:
        await model.stream(Call(prompt=[]))
    assert raised.value.classified.kind == ErrorKind.MISSING_KEY
    assert "ANTHROPIC_API_KEY" not in raised.value.classified.detail
