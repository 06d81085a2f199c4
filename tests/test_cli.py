"""The command line as a user runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatd import __version__
from chatd.cli import app


def test_demo_streams_a_turn_with_a_tool_call() -> None:
    result = CliRunner().invoke(app, ["demo", "--delay", "0", "--message", "hello there"])
    assert result.exit_code == 0, result.output
    assert "hello there" in result.output
    assert "system_info" in result.output
    assert "2 steps committed" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_bad_option_gives_a_one_line_error_not_a_traceback() -> None:
    result = CliRunner().invoke(app, ["demo", "--delay", "-1"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_models_lists_and_checks_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATD_DATA_DIR", str(tmp_path))
    for name in ("ANTHROPIC_API_KEY",):
        monkeypatch.delenv(name, raising=False)

    async def configure() -> None:
        from chatd.server import ensure_default_model
        from chatd.store import Store

        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/chatd.db", data_dir=tmp_path)
        await ensure_default_model(store)
        await store.create_model_config("claude", "anthropic", "claude-sonnet-5")
        await store.close()

    asyncio.run(configure())
    runner = CliRunner()
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    assert "scripted:default\tscripted:default (default)" in listed.output
    assert "claude\tanthropic:claude-sonnet-5" in listed.output
    ok = runner.invoke(app, ["models", "--check", "scripted:default"])
    assert ok.exit_code == 0 and ok.output.startswith("ok scripted:default"), ok.output
    failed = runner.invoke(app, ["models", "--check", "claude"])
    assert failed.exit_code == 1
    assert "missing_key" in failed.output
    assert "Traceback" not in failed.output
    unknown = runner.invoke(app, ["models", "--check", "nope"])
    assert unknown.exit_code == 2


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CHATD_DATA_DIR is `tmp_path`; no database URL or secret key from the environment."""
    monkeypatch.setenv("CHATD_DATA_DIR", str(tmp_path))
    for name in ("CHATD_DATABASE_URL", "CHATD_SECRET_KEY", "CHATD_BUILTIN_TOOLS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_models_check_of_a_config_it_cannot_build_is_one_line(data_dir: Path) -> None:
    from cryptography.fernet import Fernet

    from chatd.store import Store

    async def configure() -> None:
        url = f"sqlite+aiosqlite:///{data_dir}/chatd.db"
        store = await Store.open(url, data_dir=data_dir)
        options = {"script": [{"error": {"code": 500}}]}
        await store.create_model_config("broken", "scripted", "broken", options=options)
        await store.close()
        # A key sealed with a secret key this data dir does not have.
        store = await Store.open(url, data_dir=data_dir, secret_key=Fernet.generate_key())
        key = await store.create_provider_key("old", "openai", "sk-old-secret-1111")
        await store.create_model_config("gpt", "openai", "gpt-5", provider_key_id=key.id)
        await store.close()

    asyncio.run(configure())
    runner = CliRunner()
    for name, kind, says in [
        ("broken", "config", "options.script[0].error.code"),
        ("gpt", "missing_key", "cannot be decrypted"),
    ]:
        result = runner.invoke(app, ["models", "--check", name])
        assert result.exit_code == 1, result.output
        assert result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"failed {name}: {kind}: ") and says in result.output
        assert "sk-old" not in result.output


def test_admin_commands_outside_the_data_dir_refuse_instead_of_creating_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CHATD_DATA_DIR", "CHATD_DATABASE_URL", "CHATD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    for args in (
        ["models"],
        ["models", "--check", "scripted:default"],
        ["users", "create", "ann"],
        ["users", "list"],
        ["users", "tools", "ann", "all"],
        ["token", "create", "ann"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("\n") == 1, result.output
        assert "no chatd database at .chatd/chatd.db" in result.output
        assert "CHATD_DATA_DIR" in result.output
        assert not (tmp_path / ".chatd").exists(), args
    monkeypatch.setenv("CHATD_DATA_DIR", str(tmp_path / "elsewhere"))
    result = runner.invoke(app, ["users", "list"])
    assert result.exit_code == 2 and str(tmp_path / "elsewhere" / "chatd.db") in result.output
    assert not (tmp_path / "elsewhere").exists()


def test_users_create_and_token_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATD_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(app, ["users", "create", "ann"])
    assert created.exit_code == 0, created.output
    again = runner.invoke(app, ["users", "create", "ann"])
    assert again.exit_code == 1 and "already exists" in again.output
    assert "Traceback" not in again.output
    token = runner.invoke(app, ["token", "create", "ann"])
    assert token.exit_code == 0
    assert token.output.count("\n") == 1 and token.output.startswith("chatd_")


def test_users_tools_grants_restricts_and_lists_tool_policies(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    assert runner.invoke(app, ["users", "create", "ann"]).exit_code == 0
    assert runner.invoke(app, ["users", "create", "bob", "--admin"]).exit_code == 0

    granted = runner.invoke(app, ["users", "tools", "ann", "all"])
    assert granted.exit_code == 0, granted.output
    assert granted.output.count("\n") == 1
    assert granted.output.startswith("ann: tool policy all") and "execute" in granted.output
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "USER\tROLE\tTOOL POLICY\tEFFECTIVE",
        "ann\tuser\tall\tall",
        "bob\tadmin\tdefault\tall",
    ]

    none = runner.invoke(app, ["users", "tools", "bob", "none"])
    assert none.exit_code == 0 and "may enable no built-in tool" in none.output
    back = runner.invoke(app, ["users", "tools", "ann", "default"])
    assert back.exit_code == 0 and "execute" not in back.output and "read_file" in back.output
    monkeypatch.setenv("CHATD_BUILTIN_TOOLS", "none")
    assert runner.invoke(app, ["users", "list"]).output.splitlines()[1:] == [
        "ann\tuser\tdefault\tnone",
        "bob\tadmin\tnone\tnone",
    ]

    unknown = runner.invoke(app, ["users", "tools", "zed", "all"])
    assert unknown.exit_code == 1 and "no user named 'zed'" in unknown.output
    bad = runner.invoke(app, ["users", "tools", "ann", "root"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    for result in (unknown, bad):
        assert "Traceback" not in result.output
