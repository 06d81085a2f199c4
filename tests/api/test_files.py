"""Uploaded files over real HTTP: upload, read back, limits, types, and naming them in messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from chatd.api.schemas import MAX_FILE_BYTES
from tests.api.conftest import LiveServer
from tests.api.test_app_basics import assert_error_shape

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 17
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
TEXT = "notes: café ☕\n".encode()


@pytest.fixture
async def users(server: LiveServer) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {}
    for name in ("ann", "bob"):
        user = await server.state.store.create_user(name)
        token, _ = await server.state.store.create_api_token(user.id)
        clients[name] = httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def upload(
    client: httpx.AsyncClient, data: bytes, name: str = "f", content_type: str = "x/ignored"
) -> httpx.Response:
    return await client.post("/api/chats/files", files={"file": (name, data, content_type)})


@pytest.mark.parametrize(
    ("name", "data", "media_type"),
    [
        ("shot.png", PNG, "image/png"),
        ("paper.pdf", PDF, "application/pdf"),
        ("notes.txt", TEXT, "text/plain"),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
        ("pic.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8 \x0e\x00\x00\x00", "image/webp"),
    ],
)
async def test_an_upload_is_typed_by_content_and_reads_back_to_its_owner(
    users: dict[str, httpx.AsyncClient], name: str, data: bytes, media_type: str
) -> None:
    ann = users["ann"]
    # The client's part type and the name both lie; neither counts.
    response = await upload(ann, data, name, "application/octet-stream")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "media_type", "size", "created_at"}
    assert (body["name"], body["media_type"], body["size"]) == (name, media_type, len(data))
    assert response.headers["location"] == f"/api/chats/files/{body['id']}"
    read = await ann.get(f"/api/chats/files/{body['id']}")
    assert read.status_code == 200
    assert read.content == data
    assert read.headers["content-type"].startswith(media_type)
    assert read.headers["x-content-type-options"] == "nosniff"


async def test_another_users_file_and_an_unknown_id_are_404(
    users: dict[str, httpx.AsyncClient], server: LiveServer
) -> None:
    file = (await upload(users["ann"], PNG)).json()
    assert_error_shape(await users["bob"].get(f"/api/chats/files/{file['id']}"), 404, "not_found")
    missing = "00000000-0000-7000-8000-00000000dead"
    assert_error_shape(await users["ann"].get(f"/api/chats/files/{missing}"), 404, "not_found")
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert_error_shape(
            await anonymous.get(f"/api/chats/files/{file['id']}"), 401, "unauthorized"
        )
        assert_error_shape(await upload(anonymous, PNG), 401, "unauthorized")


async def test_an_eleven_megabyte_upload_is_413(users: dict[str, httpx.AsyncClient]) -> None:
    response = await upload(users["ann"], b"a" * (11 << 20), "big.txt")
    error = assert_error_shape(response, 413, "payload_too_large")
    assert error["message"].endswith(".")


async def test_a_file_one_byte_over_the_limit_is_413_while_it_streams(
    users: dict[str, httpx.AsyncClient],
) -> None:
    # Inside the body limit (the multipart framing has room), so the route's own
    # count refuses it as it streams in.
    error = assert_error_shape(
        await upload(users["ann"], b"a" * (MAX_FILE_BYTES + 1)), 413, "payload_too_large"
    )
    assert error["message"] == "The file is too large; upload at most 10 MiB."
    # A chunked body has no size to check up front; it is refused once it passes the
    # upload route's body limit, before the route sees it.
    boundary = "xyzzy"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.txt"\r\n\r\n'
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        for _ in range(MAX_FILE_BYTES // (1 << 20) + 1):
            yield b"a" * (1 << 20)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await users["ann"].post(
        "/api/chats/files",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error_shape(response, 413, "payload_too_large")
    exactly = await upload(users["ann"], b"a" * MAX_FILE_BYTES)
    assert exactly.status_code == 201, exactly.text


@pytest.mark.parametrize(
    "data",
    [
        b"MZ\x90\x00\x03\x00\x00\x00",  # an executable, whatever its name says
        b"PK\x03\x04\x14\x00\x00\x00",  # a zip
        b"\xc3\x28 invalid utf-8",
        b"text with a NUL \x00 inside",
    ],
)
async def test_an_unsupported_type_is_415(users: dict[str, httpx.AsyncClient], data: bytes) -> None:
    error = assert_error_shape(
        await upload(users["ann"], data, "innocent.png", "image/png"), 415, "unsupported_media_type"
    )
    assert "PNG" in error["message"]


async def test_malformed_uploads_are_4xx_with_the_error_shape(
    users: dict[str, httpx.AsyncClient],
) -> None:
    ann = users["ann"]
    no_file = await ann.post("/api/chats/files", files={"other": ("a.txt", b"hi", "text/plain")})
    assert_error_shape(no_file, 422, "invalid_request")
    assert_error_shape(await upload(ann, b""), 422, "invalid_request")
    json_body = await ann.post("/api/chats/files", json={"file": "aGk="})
    assert_error_shape(json_body, 415, "unsupported_media_type")
    truncated = await ann.post(
        "/api/chats/files",
        content=b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nhi',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert_error_shape(truncated, 422, "invalid_request")


async def test_a_path_in_the_uploaded_name_is_dropped(
    users: dict[str, httpx.AsyncClient],
) -> None:
    body = (await upload(users["ann"], TEXT, "../../etc/passwd")).json()
    assert body["name"] == "passwd"
    raw = await users["ann"].post(
        "/api/chats/files",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; '
        b'filename="C:\\tmp\\a\x07b.txt"\r\n\r\nhi\r\n--b--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert raw.json()["name"] == "ab.txt"
    body = (await upload(users["ann"], TEXT, "")).json()
    assert body["name"] == "file"


async def test_file_ids_become_file_parts_of_the_user_message(
    users: dict[str, httpx.AsyncClient],
) -> None:
    ann = users["ann"]
    png = (await upload(ann, PNG, "shot.png")).json()
    pdf = (await upload(ann, PDF, "paper.pdf")).json()
    created = await ann.post(
        "/api/chats", json={"message": "what are these?", "file_ids": [png["id"], pdf["id"]]}
    )
    assert created.status_code == 201, created.text
    chat = created.json()
    [message] = (await ann.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    assert message["parts"] == [
        {"type": "file", "file_id": png["id"], "name": "shot.png", "media_type": "image/png"},
        {
            "type": "file",
            "file_id": pdf["id"],
            "name": "paper.pdf",
            "media_type": "application/pdf",
        },
        {"type": "text", "text": "what are these?"},
    ]
    await ann.post(f"/api/chats/{chat['id']}/interrupt")
    text = (await upload(ann, TEXT, "notes.txt")).json()
    sent = await ann.post(f"/api/chats/{chat['id']}/messages", json={"file_ids": [text["id"]]})
    assert sent.status_code == 200, sent.text
    assert sent.json()["message"]["parts"] == [
        {"type": "file", "file_id": text["id"], "name": "notes.txt", "media_type": "text/plain"}
    ]


async def test_a_foreign_or_unknown_file_id_is_422_and_sends_nothing(
    users: dict[str, httpx.AsyncClient],
) -> None:
    ann, bob = users["ann"], users["bob"]
    theirs = (await upload(bob, PNG)).json()
    refused = await ann.post("/api/chats", json={"message": "hi", "file_ids": [theirs["id"]]})
    assert_error_shape(refused, 422, "invalid_request")
    assert (await ann.get("/api/chats")).json()["chats"] == []

    chat = (await ann.post("/api/chats", json={"message": "hi"})).json()
    await ann.post(f"/api/chats/{chat['id']}/interrupt")
    for file_ids in ([theirs["id"]], ["00000000-0000-7000-8000-00000000dead"]):
        response = await ann.post(
            f"/api/chats/{chat['id']}/messages", json={"message": "x", "file_ids": file_ids}
        )
        error = assert_error_shape(response, 422, "invalid_request")
        assert file_ids[0] in error["message"]
    messages = (await ann.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    assert len(messages) == 1
    # Bob still reads his file; Ann never could.
    assert (await bob.get(f"/api/chats/files/{theirs['id']}")).status_code == 200


async def test_a_message_needs_text_or_files(users: dict[str, httpx.AsyncClient]) -> None:
    ann = users["ann"]
    for body in ({"message": "  "}, {"file_ids": []}, {}):
        assert_error_shape(await ann.post("/api/chats", json=body), 422, "invalid_request")


async def test_editing_the_text_keeps_the_files_and_file_ids_replace_them(
    users: dict[str, httpx.AsyncClient],
) -> None:
    ann = users["ann"]
    png = (await upload(ann, PNG, "shot.png")).json()
    text = (await upload(ann, TEXT, "notes.txt")).json()
    chat = (await ann.post("/api/chats", json={"message": "hi", "file_ids": [png["id"]]})).json()
    [first] = (await ann.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    path = f"/api/chats/{chat['id']}/messages"
    edited = (await ann.patch(f"{path}/{first['id']}", json={"message": "hello"})).json()
    assert [p.get("name") for p in edited["message"]["parts"]] == ["shot.png", None]
    replaced = await ann.patch(
        f"{path}/{edited['message']['id']}", json={"message": "hey", "file_ids": [text["id"]]}
    )
    assert [p.get("name") for p in replaced.json()["message"]["parts"]] == ["notes.txt", None]
    foreign = (await upload(users["bob"], PNG)).json()
    refused = await ann.patch(
        f"{path}/{replaced.json()['message']['id']}",
        json={"message": "x", "file_ids": [foreign["id"]]},
    )
    assert_error_shape(refused, 422, "invalid_request")
