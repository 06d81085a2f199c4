"""Every file a `chatd serve` keeps is its own alone, whatever umask it was started with.

The data dir holds the database (chats of every user), the secret key that decrypts
provider keys, and the admin token; the workspaces hold each chat's files. None of it
may be readable by another local user: files 0600, directories 0700 (0711, search
only, when the sandbox runs commands as a user of its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import httpx

from chatd.store import Store
from tests.service.serving import chatd_serve


async def _seed_as_an_older_chatd(data_dir: Path) -> str:
    """A database made under umask 022, as chatd before 0600 files (or a tool) left it."""
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir}/chatd.db", data_dir=data_dir)
    try:
        await store.create_model_config(
            "fast", "scripted", "fast", options={"delta_delay": 0.0}, is_default=True
        )
        user = await store.create_user("alice")
        token, _ = await store.create_api_token(user.id)
        return token
    finally:
        await store.close()


def _loose_umask() -> None:
    os.umask(0o022)


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)) or ".": stat.S_IMODE(path.lstat().st_mode)
        for path in [root, *sorted(root.rglob("*"))]
        if not path.is_symlink()
    }


def test_the_data_dir_and_workspaces_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    os.umask(old := os.umask(0o022))
    try:
        data_dir.mkdir(mode=0o755)
        token = asyncio.run(_seed_as_an_older_chatd(data_dir))
    finally:
        os.umask(old)
    assert stat.S_IMODE((data_dir / "chatd.db").stat().st_mode) & 0o044  # the starting point

    env = {"CHATD_GENERATE_TITLES": "false"}
    with chatd_serve(data_dir, env=env, preexec_fn=_loose_umask) as served:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=30) as client:
            args = {"path": "notes/today.txt", "content": "private\n"}
            created = client.post(
                "/api/chats",
                json={
                    "message": f"/call write_file {json.dumps(args)}",
                    "tools": {"builtin": ["write_file"]},
                },
            )
            assert created.status_code == 201, created.text
            chat_id = created.json()["id"]
            deadline = time.monotonic() + 30
            while client.get(f"/api/chats/{chat_id}").json()["status"] not in ("waiting", "error"):
                assert time.monotonic() < deadline, "the turn did not end"
                time.sleep(0.05)
        modes = _modes(data_dir)

    written = [name for name in modes if name.endswith("notes/today.txt")]
    assert written, f"the tool wrote nothing: {sorted(modes)}"
    for name in ("chatd.db", "secret.key", "admin.token"):
        assert name in modes, sorted(modes)
    for name, mode in modes.items():
        if (data_dir / name).is_dir():
            assert mode in (0o700, 0o711), f"{name}: {mode:o}"
        else:
            assert mode & 0o077 == 0, f"{name}: {mode:o}"
