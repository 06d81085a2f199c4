"""attach_file: returns the file as media, guessing the type, within 5 MiB."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from chatd.loop import Tool
from chatd.tools import Workspace
from chatd.tools._files import MAX_ATTACH_BYTES
from chatd.types import ToolResultMedia

from .helpers import call, error


async def test_returns_media_with_a_guessed_type(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    png = b"\x89PNG\r\n\x1a\n\0\0"
    (workspace.root / "img").mkdir()
    (workspace.root / "img" / "dot.png").write_bytes(png)
    response = await call(tools, "attach_file", path="img/dot.png")
    assert not response.is_error
    output = response.to_output()
    assert isinstance(output, ToolResultMedia)
    assert base64.b64decode(output.data) == png
    assert output.media_type == "image/png"
    assert output.text == "img/dot.png"


async def test_explicit_media_type_wins_and_unknown_is_octet_stream(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "data").write_bytes(b"abc")
    assert (await call(tools, "attach_file", path="data")).media_type == "application/octet-stream"
    given = await call(tools, "attach_file", path="data", media_type="text/csv")
    assert given.media_type == "text/csv"


async def test_files_over_5_mib_and_missing_files_are_refused(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    os.truncate(_touch(workspace.root / "big.bin"), MAX_ATTACH_BYTES + 1)
    assert "over the 5242880 byte limit" in error(await call(tools, "attach_file", path="big.bin"))
    assert error(await call(tools, "attach_file", path="nope.png")) == "File not found: nope.png"


def _touch(path: Path) -> Path:
    path.touch()
    return path
