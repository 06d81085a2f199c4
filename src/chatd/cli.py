"""The `chatd` command line.

`chatd demo` runs one turn of the agent loop in the terminal with the offline
scripted model and a demo tool, rendering the stream live with rich. It is what
`make run` shows until the server lands.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from chatd import __version__
from chatd.loop import PersistedStep, RunOptions, Tool, ToolCall, ToolResponse, run
from chatd.providers.scripted import ScriptedModel
from chatd.types import (
    Message,
    MessagePart,
    ReasoningPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolResultText,
)

if TYPE_CHECKING:
    from chatd.config import Settings
    from chatd.store import Store

app = typer.Typer(help="chatd: durable LLM agent chats.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """chatd: durable LLM agent chats."""


@app.command()
def version() -> None:
    """Print the chatd version."""
    typer.echo(__version__)


async def _system_info(_call: ToolCall) -> ToolResponse:
    return ToolResponse.text(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    )


class _Transcript:
    """What the live view shows: streamed text, reasoning and tool activity, in order."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Text]] = []

    def _tail(self, kind: str) -> Text:
        if not self.blocks or self.blocks[-1][0] != kind:
            self.blocks.append((kind, Text()))
        return self.blocks[-1][1]

    def publish(self, role: Role, part: MessagePart) -> None:
        if isinstance(part, TextPart):
            self._tail("text").append(part.text)
        elif isinstance(part, ReasoningPart):
            self._tail("reasoning").append(part.text, style="italic dim")
        elif isinstance(part, ToolCallPart) and not part.args_delta:
            self.blocks.append(("tool", Text(f"⚙ {part.tool_name}({part.input})", style="cyan")))
        elif isinstance(part, ToolResultPart):
            output = part.output
            shown = output.text if isinstance(output, ToolResultText) else repr(output)
            self.blocks.append(("tool", Text(f"↳ {shown}", style="green")))

    def render(self) -> Group:
        titles = {"text": "assistant", "reasoning": "thinking…", "tool": "tool"}
        return Group(
            *(Panel(body, title=titles[kind], title_align="left") for kind, body in self.blocks)
        )


async def _demo(message: str, delay: float, console: Console) -> list[PersistedStep]:
    steps: list[PersistedStep] = []

    async def persist(step: PersistedStep) -> None:
        steps.append(step)

    transcript = _Transcript()
    console.print(Panel(message, title="you", title_align="left", style="bold"))
    with Live(transcript.render(), console=console, refresh_per_second=20) as live:

        def publish(role: Role, part: MessagePart) -> None:
            transcript.publish(role, part)
            live.update(transcript.render())

        await run(
            RunOptions(
                model=ScriptedModel(delta_delay=delay),
                messages=[Message(Role.USER, [TextPart(message)])],
                tools=[Tool("system_info", "Describe the machine chatd runs on.", _system_info)],
                max_steps=4,
                persist_step=persist,
                publish_message_part=publish,
            )
        )
    return steps


@app.command()
def demo(
    message: str = typer.Option("What machine are you running on?", help="The user message."),
    delay: float = typer.Option(0.03, min=0.0, help="Seconds between streamed words."),
) -> None:
    """Run one agent turn with the offline scripted model and render it live."""
    console = Console()
    steps = asyncio.run(_demo(message, delay, console))
    console.print()
    console.print(
        f"[bold]{len(steps)} steps committed[/bold] "
        f"({sum(len(s.content) for s in steps)} parts). "
        "This is the agent loop on its own; the server comes with `chatd serve`."
    )


@app.command()
def migrate() -> None:
    """Upgrade the database to this version's schema.

    The database is CHATD_DATABASE_URL, by default SQLite in CHATD_DATA_DIR (./.chatd).
    """
    from sqlalchemy.engine import make_url

    from chatd.store import Database, DatabaseTooNew, current_revision, database_url_from_env
    from chatd.store import upgrade as upgrade_schema

    url = database_url_from_env()
    shown = make_url(url).render_as_string(hide_password=True)

    async def run() -> tuple[str | None, str | None]:
        db = Database(url)
        try:
            before = await current_revision(db)
            await upgrade_schema(db)
            return before, await current_revision(db)
        finally:
            await db.dispose()

    try:
        before, after = asyncio.run(run())
    except DatabaseTooNew as err:
        typer.echo(f"chatd migrate: {shown}: {err}", err=True)
        raise typer.Exit(2) from None
    if before == after:
        typer.echo(f"{shown} is up to date (revision {after}).")
    else:
        typer.echo(f"{shown} upgraded from {before or 'an empty database'} to revision {after}.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on."),
    replica_id: str | None = typer.Option(
        None, help="Name of this replica in logs, /readyz and metrics (CHATD_REPLICA_ID)."
    ),
) -> None:
    """Run the chat service: HTTP API, web UI, worker (CHATD_* environment settings)."""
    from chatd.config import ConfigError, load_settings
    from chatd.logs import configure_logging
    from chatd.server import run_serve

    try:
        settings = load_settings(host=host, port=port, replica_id=replica_id)
    except ConfigError as err:
        typer.echo(f"chatd serve: {err}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.replica_id)
    run_serve(settings)


@app.command()
def models(
    check: str | None = typer.Option(
        None, "--check", metavar="NAME", help="Send one tiny request to this model config."
    ),
) -> None:
    """List the configured models; --check NAME proves one works."""
    from chatd.errors import ClassifiedException
    from chatd.providers import check_model
    from chatd.server import model_for_config

    settings = _store_settings_or_exit("chatd models")

    async def run() -> int:
        store = await _open_store(settings)
        try:
            configs = await store.list_model_configs()
            if check is None:
                for c in configs:
                    flags = " (default)" if c.is_default else ""
                    flags += "" if c.enabled else " (disabled)"
                    typer.echo(f"{c.name}\t{c.provider}:{c.model}{flags}")
                if not configs:
                    typer.echo("no model configs yet; `chatd serve` creates the scripted default")
                return 0
            chosen = next((c for c in configs if check in (c.name, c.id)), None)
            if chosen is None:
                typer.echo(f"chatd models: no model config named {check!r}", err=True)
                return 2
            try:
                model = await model_for_config(store, chosen)
            except ClassifiedException as err:
                typer.echo(
                    f"failed {chosen.name}: {err.classified.kind}: {err.classified.message}",
                    err=True,
                )
                return 1
            result = await check_model(model)
            if result.error is None:
                typer.echo(f"ok {chosen.name} ({result.seconds:.2f} s): {result.text.strip()!r}")
                return 0
            status = f", HTTP {result.error.status_code}" if result.error.status_code else ""
            typer.echo(
                f"failed {chosen.name}: {result.error.kind}{status}: {result.error.message}",
                err=True,
            )
            return 1
        finally:
            await store.close()

    raise typer.Exit(asyncio.run(run()))


users_app = typer.Typer(help="Users.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    user: str = typer.Argument(..., help="User name: 1-64 of a-z, 0-9, '_', '.', '-'."),
    admin: bool = typer.Option(False, "--admin", help="Make the user an admin."),
) -> None:
    """Create a user (use `chatd token create USER` for its token)."""
    from chatd.store import InvalidRequest

    settings = _store_settings_or_exit("chatd users create")

    async def create() -> str:
        store = await _open_store(settings)
        try:
            account = await store.create_user(user, is_admin=admin)
            return account.id
        finally:
            await store.close()

    try:
        typer.echo(asyncio.run(create()))
    except InvalidRequest as err:
        typer.echo(f"chatd users create: {err.message}", err=True)
        raise typer.Exit(1) from None


@users_app.command("list")
def users_list() -> None:
    """List users: name, role, tool policy override and the effective policy."""
    from chatd.tools import effective_tool_policy

    settings = _store_settings_or_exit("chatd users list")

    async def read() -> list[Any]:
        store = await _open_store(settings)
        try:
            return await store.list_users()
        finally:
            await store.close()

    accounts = asyncio.run(read())
    typer.echo("USER\tROLE\tTOOL POLICY\tEFFECTIVE")
    for account in accounts:
        effective = effective_tool_policy(
            account.tool_policy, is_admin=account.is_admin, default=settings.builtin_tools
        )
        role = "admin" if account.is_admin else "user"
        typer.echo(f"{account.username}\t{role}\t{account.tool_policy or 'default'}\t{effective}")


@users_app.command("tools")
def users_tools(
    user: str = typer.Argument(..., help="User name."),
    policy: str = typer.Argument(
        ..., metavar="none|files|all|default", help="The built-in tools USER may enable."
    ),
) -> None:
    """Set which built-in tools USER may enable; `default` follows CHATD_BUILTIN_TOOLS."""
    from chatd.config import TOOL_POLICIES
    from chatd.store import NotFound
    from chatd.tools import allowed_builtin_tools, effective_tool_policy

    if policy not in (*TOOL_POLICIES, "default"):
        typer.echo(
            f"chatd users tools: the policy is one of {', '.join(TOOL_POLICIES)}, default "
            f"(got {policy!r})",
            err=True,
        )
        raise typer.Exit(2)
    settings = _store_settings_or_exit("chatd users tools")

    async def set_policy() -> Any:
        store = await _open_store(settings)
        try:
            account = await store.get_user_by_name(user)
            return await store.set_tool_policy(account.id, None if policy == "default" else policy)
        finally:
            await store.close()

    try:
        account = asyncio.run(set_policy())
    except NotFound:
        typer.echo(f"chatd users tools: no user named {user!r}", err=True)
        raise typer.Exit(1) from None
    effective = effective_tool_policy(
        account.tool_policy, is_admin=account.is_admin, default=settings.builtin_tools
    )
    names = ", ".join(sorted(allowed_builtin_tools(effective))) or "no built-in tool"
    typer.echo(f"{user}: tool policy {policy}, may enable {names}")


def _settings_or_exit(command: str) -> Settings:
    from chatd.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as err:
        typer.echo(f"{command}: {err}", err=True)
        raise typer.Exit(2) from None


def _store_settings_or_exit(command: str) -> Settings:
    """The settings of a command that opens an existing store, or a one-line refusal.

    Only `chatd serve` and `chatd migrate` create a database: an admin command run
    outside the data dir must not make a new one (with its own secret key) there.
    """
    from sqlalchemy.engine import make_url

    settings = _settings_or_exit(command)
    url = make_url(settings.effective_database_url)
    database = url.database or ""
    on_disk = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if on_disk and not Path(database).is_file():
        typer.echo(
            f"{command}: no chatd database at {database}; run it where `chatd serve` "
            "keeps its data, or point CHATD_DATA_DIR (or CHATD_DATABASE_URL) at it",
            err=True,
        )
        raise typer.Exit(2)
    return settings


async def _open_store(settings: Settings) -> Store:
    from chatd.store import Store

    key = settings.secret_key.encode() if settings.secret_key else None
    return await Store.open(
        settings.effective_database_url, data_dir=settings.data_dir, secret_key=key
    )


def _default_token() -> str | None:
    """The first-start admin token `chatd serve` wrote to the data dir, if readable."""
    path = Path(os.environ.get("CHATD_DATA_DIR", ".chatd")) / "admin.token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@app.command()
def chat(
    chat_id: str | None = typer.Argument(None, help="Continue this chat (default: a new one)."),
    url: str = typer.Option("http://127.0.0.1:8080", envvar="CHATD_URL", help="The chatd server."),
    token: str | None = typer.Option(
        None,
        envvar="CHATD_TOKEN",
        help="API token (default: the admin token in $CHATD_DATA_DIR/admin.token).",
    ),
    model: str | None = typer.Option(None, help="Model for new messages (see /models)."),
    tools: Literal["none", "files", "all"] | None = typer.Option(
        None,
        "--tools",
        show_default=False,
        help="Built-in tools of a new chat: none (the default), files (read, write, attach) "
        "or all (also run commands in the sandbox); a CHAT_ID keeps its own (see /tools).",
    ),
) -> None:
    """Chat with a chatd server in the terminal; Ctrl-C interrupts the running turn."""
    from chatd.client import ApiClient, ApiError, ChatSession

    token = token or _default_token()
    if not token:
        typer.echo(
            "chatd chat: no token; pass --token or set CHATD_TOKEN "
            "(chatd serve writes the admin token to .chatd/admin.token)",
            err=True,
        )
        raise typer.Exit(2)

    async def session() -> None:
        api = ApiClient(url, token)
        try:
            await ChatSession(api, Console(), chat_id=chat_id, model=model, tools=tools).run()
        finally:
            await api.aclose()

    try:
        asyncio.run(session())
    except ApiError as err:
        typer.echo(f"chatd chat: {err.message}", err=True)
        raise typer.Exit(1) from None


token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    user: str = typer.Argument(..., help="User name (created when missing)."),
    admin: bool = typer.Option(False, "--admin", help="Make the user an admin."),
) -> None:
    """Print a new bearer token for USER as the only line on stdout."""
    from chatd.store import NotFound

    settings = _store_settings_or_exit("chatd token create")

    async def create() -> str:
        store = await _open_store(settings)
        try:
            try:
                account = await store.get_user_by_name(user)
                if admin and not account.is_admin:
                    account = await store.set_admin(account.id, True)
            except NotFound:
                account = await store.create_user(user, is_admin=admin)
            token, _ = await store.create_api_token(account.id, name="cli")
            return token
        finally:
            await store.close()

    typer.echo(asyncio.run(create()))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
