"""End to end over real HTTP: upload files, send them, and the model receives their bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.api.test_app_basics import assert_error_shape
from tests.service.conftest import running_replica
from tests.service.test_turns import wait_status

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
TEXT = "line one\nligne deux ☕\n".encode()


async def test_uploaded_png_pdf_and_text_reach_the_model_and_stay_private(
    tmp_path: Path,
) -> None:
    call_log = tmp_path / "calls.jsonl"
    async with running_replica(tmp_path, scripted_call_log=call_log) as live:
        ann, bob = await live.token("ann"), await live.token("bob")
        async with live.client(ann) as client, live.client(bob) as other:
            uploaded = []
            for name, data in (("shot.png", PNG), ("paper.pdf", PDF), ("notes.txt", TEXT)):
                response = await client.post("/api/chats/files", files={"file": (name, data)})
                assert response.status_code == 201, response.text
                uploaded.append(response.json())
            assert [f["media_type"] for f in uploaded] == [
                "image/png",
                "application/pdf",
                "text/plain",
            ]
            chat = (await client.post("/api/chats", json={"message": "first, no files"})).json()
            await wait_status(client, chat["id"], "waiting")
            sent = await client.post(
                f"/api/chats/{chat['id']}/messages",
                json={"message": "what are these?", "file_ids": [f["id"] for f in uploaded]},
            )
            assert sent.status_code == 200, sent.text
            await wait_status(client, chat["id"], "waiting")

            messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
            user_turn, answer = messages[-2:]
            assert user_turn["parts"][:3] == [
                {"type": "file", "file_id": f["id"], "name": f["name"], "media_type": mt}
                for f, mt in zip(
                    uploaded, ("image/png", "application/pdf", "text/plain"), strict=True
                )
            ]
            reply = answer["parts"][-1]["text"]
            assert "attached shot.png (image/png" in reply
            assert "notes.txt (text/plain" in reply

            # Another user's token gets a 404 for each file, the owner the bytes.
            for file, data in zip(uploaded, (PNG, PDF, TEXT), strict=True):
                assert_error_shape(
                    await other.get(f"/api/chats/files/{file['id']}"), 404, "not_found"
                )
                assert (await client.get(f"/api/chats/files/{file['id']}")).content == data

    calls = [json.loads(line) for line in call_log.read_text().splitlines()]
    [with_files] = [c for c in calls if c["phase"] == "start" and c["files"]]
    assert with_files["user"] == "what are these?"
    assert with_files["files"] == [
        {
            "file_id": file["id"],
            "name": file["name"],
            "media_type": file["media_type"],
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for file, data in zip(uploaded, (PNG, PDF, TEXT), strict=True)
    ]
