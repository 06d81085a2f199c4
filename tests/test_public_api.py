"""Every package's public names are sorted, importable and really exported."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "chatd",
    "chatd.types",
    "chatd.errors",
    "chatd.protocols",
    "chatd.loop",
    "chatd.loop.retry",
    "chatd.loop.metrics",
    "chatd.providers",
]


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.{attribute} is missing"


def test_model_hooks_names_every_optional_hook() -> None:
    from chatd.protocols import MODEL_HOOKS, ModelHooks

    hooks = sorted(n for n, v in vars(ModelHooks).items() if callable(v) and n[0] != "_")
    assert list(MODEL_HOOKS) == hooks


def test_importing_chatd_imports_no_provider_sdk() -> None:
    # In a fresh interpreter: the provider tests import every SDK into this one.
    import subprocess
    import sys

    code = (
        "import sys, chatd, chatd.loop, chatd.providers\n"
        "loaded = [m for m in ('openai', 'anthropic', 'google.genai') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
