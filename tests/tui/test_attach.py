"""`/attach PATH` in `chatd chat`: the file is uploaded and goes with the next message."""

from __future__ import annotations

from pathlib import Path

from tests.service.conftest import LiveReplica
from tests.tui.test_chat_command import Terminal


async def test_attach_uploads_a_file_that_the_next_message_sends(
    live: LiveReplica, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("buy milk\n")
    binary = tmp_path / "tool.exe"
    binary.write_bytes(b"MZ\x90\x00\x03\x00")
    token = await live.token("att")
    term = Terminal(live, token, tmp_path)
    try:
        await term.expect("you> ")
        term.child.sendline(f"/attach {tmp_path / 'missing.txt'}")
        await term.expect("error [file]: Cannot read")
        term.child.sendline(f"/attach {binary}")
        await term.expect("error [unsupported_media_type] HTTP 415: ")
        term.child.sendline(f"/attach {notes}")
        await term.expect("Attached notes.txt (text/plain, 9 bytes); it goes with your next")
        term.child.sendline("/attach")
        await term.expect("Attached for the next message: notes.txt")
        term.child.sendline("what is on my list?")
        await term.expect("📎 notes.txt (text/plain)")  # the sent message shows its file
        await term.expect("attached notes.txt (text/plain, 9 bytes)")  # the model's reply
        await term.expect("you> ")
        term.child.sendline("/attach")
        await term.expect("Nothing attached.")  # sent once, then forgotten
        await term.quit()
    finally:
        term.close()
    async with live.client(token) as client:
        [chat] = (await client.get("/api/chats")).json()["chats"]
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    file_part, text_part = messages[0]["parts"]
    assert (file_part["type"], file_part["name"], file_part["media_type"]) == (
        "file",
        "notes.txt",
        "text/plain",
    )
    assert text_part == {"type": "text", "text": "what is on my list?"}
    async with live.client(token) as client:
        stored = await client.get(f"/api/chats/files/{file_part['file_id']}")
    assert stored.content == b"buy milk\n"
