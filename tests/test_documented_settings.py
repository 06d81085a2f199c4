"""Every `CHATD_*` variable README.md and docs/*.md name is one chatd really uses.

A documented name must change what `load_settings` returns (a service setting), be
looked up in the environment by the code (`os.environ.get("CHATD_…")`, a CLI option's
`envvar`), or be set by the code for the commands it runs (`CHATD_CHAT_ID=…`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from chatd.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAME = re.compile(r"\bCHATD_[A-Z][A-Z0-9_]*\b")
# A fixed replica id, so two loads with the same environment compare equal.
BASE = {"CHATD_REPLICA_ID": "base"}


def documented() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for doc in DOCS:
        for name in NAME.findall(doc.read_text()):
            names.setdefault(name, []).append(doc.name)
    return names


def is_setting(name: str) -> bool:
    try:
        return load_settings({**BASE, name: "x"}) != load_settings(BASE)
    except ConfigError:
        return True  # read, and "x" refused


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Name | ast.Attribute) and (
        getattr(node, "id", None) == "environ" or getattr(node, "attr", None) == "environ"
    )


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def used_by_code() -> set[str]:
    """Names looked up in the environment, or set in one, anywhere in src/chatd."""
    names: set[str] = set()
    for path in (ROOT / "src" / "chatd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            found: list[str | None] = []
            if isinstance(node, ast.Call):
                func = node.func
                lookup = isinstance(func, ast.Attribute) and (
                    (func.attr == "get" and _is_environ(func.value)) or func.attr == "getenv"
                )
                if lookup and node.args:
                    found.append(_text(node.args[0]))
                found += [_text(k.value) for k in node.keywords if k.arg == "envvar"]
                found += [k.arg for k in node.keywords if k.arg and NAME.fullmatch(k.arg)]
            elif isinstance(node, ast.Subscript) and _is_environ(node.value):
                found.append(_text(node.slice))
            names.update(n for n in found if n and NAME.fullmatch(n))
    return names


def test_every_documented_chatd_variable_is_used_by_the_code() -> None:
    names = documented()
    assert "CHATD_DATA_DIR" in names and "CHATD_URL" in names  # the scan sees the docs
    code = used_by_code()
    assert {"CHATD_METRICS_TOKEN", "CHATD_TOKEN", "CHATD_CHAT_ID"} <= code  # and the code
    unused = {n: docs for n, docs in names.items() if n not in code and not is_setting(n)}
    assert unused == {}, f"documented but read by nothing: {unused}"


def test_an_unread_name_is_caught() -> None:
    assert not is_setting("CHATD_WORKSPACE_MODE")
    assert "CHATD_WORKSPACE_MODE" not in used_by_code()
    assert is_setting("CHATD_WORKSPACE_ROOT") and is_setting("CHATD_REPLICA_ID")
