"""Uploaded files: owner-only reads, links made with the message, eviction, the model's bytes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from chatd.store import (
    MAX_CHAT_FILES,
    Database,
    InvalidRequest,
    NotFound,
    Store,
    current_revision,
    new_id,
    upgrade,
)
from chatd.store._migrations import _config
from chatd.store._schema import chat_messages, chats
from chatd.types import FilePart, MessagePart, Role, TextPart
from tests.store.conftest import Backend
from tests.store.helpers import acquire, send, text, text_step, waiting_chat

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


async def user(store: Store) -> str:
    return (await store.create_user(f"u{new_id()[-12:]}")).id


def naming(*file_ids: str, message: str = "look") -> list[MessagePart]:
    return [*(FilePart(file_id=file_id) for file_id in file_ids), TextPart(message)]


async def test_a_file_reads_back_to_its_owner_only(store: Store) -> None:
    owner, other = await user(store), await user(store)
    file = await store.create_file(owner, "shot.png", "image/png", PNG)
    assert (file.name, file.media_type, file.size) == ("shot.png", "image/png", len(PNG))
    read, data = await store.read_file(file.id, owner_id=owner)
    assert read == file
    assert data == PNG
    with pytest.raises(NotFound):
        await store.read_file(file.id, owner_id=other)
    with pytest.raises(NotFound):
        await store.read_file(new_id(), owner_id=owner)


async def test_a_message_stores_file_ids_and_the_model_gets_the_bytes(store: Store) -> None:
    owner = await user(store)
    file = await store.create_file(owner, "shot.png", "image/png", PNG)
    chat = await store.create_chat(owner, naming(file.id))
    [message] = await store.list_messages(chat.id)
    # History keeps the id, name and type, never the bytes.
    assert message.parts == [
        FilePart(file_id=file.id, filename="shot.png", media_type="image/png"),
        TextPart("look"),
    ]
    async with store.db.read() as conn:
        raw = (
            await conn.execute(
                sa.select(sa.cast(chat_messages.c.parts, sa.Text)).where(
                    chat_messages.c.chat_id == chat.id
                )
            )
        ).scalar_one()
    assert '"data"' not in raw
    [prompt] = (await store.load_history(chat.id)).messages
    assert prompt.role == Role.USER
    assert prompt.content[0] == FilePart(PNG, "image/png", "shot.png", file_id=file.id)
    assert await store.chat_file_ids(chat.id) == [file.id]


async def test_another_users_file_is_refused_and_nothing_is_written(store: Store) -> None:
    owner, other = await user(store), await user(store)
    theirs = await store.create_file(other, "secret.txt", "text/plain", b"secret")
    with pytest.raises(InvalidRequest) as refused:
        await store.create_chat(owner, naming(theirs.id))
    assert theirs.id in refused.value.message
    async with store.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(chats))).scalar() == 0

    chat = await waiting_chat(store)
    before = await store.list_all_messages(chat.id)
    with pytest.raises(InvalidRequest):
        await store.send_message(chat.id, naming(new_id()))
    assert await store.list_all_messages(chat.id) == before
    assert (await store.get_chat(chat.id)).snapshot_version == chat.snapshot_version


async def test_the_fifty_first_file_evicts_the_oldest_link(store: Store) -> None:
    owner = await user(store)
    files = [
        (await store.create_file(owner, f"f{i}.txt", "text/plain", f"file {i}".encode())).id
        for i in range(MAX_CHAT_FILES + 1)
    ]
    chat = await store.create_chat(owner, naming(files[0], message="first"))
    lease = await acquire(store, chat.id)
    await store.commit_step(lease, new_id(), text_step())
    await store.finish_turn(lease)
    await store.send_message(chat.id, naming(*files[1:MAX_CHAT_FILES], message="more"))
    assert await store.chat_file_ids(chat.id) == files[:MAX_CHAT_FILES]
    # Naming the first file again makes it the newest link: the second one goes.
    await send(store, chat.id, "queued while pending")
    await store.send_message(chat.id, naming(files[0], files[MAX_CHAT_FILES], message="last"))
    linked = await store.chat_file_ids(chat.id)
    assert len(linked) == MAX_CHAT_FILES
    assert files[1] not in linked
    assert linked[-2:] == [files[0], files[MAX_CHAT_FILES]]


async def test_an_evicted_file_reaches_the_model_as_a_note(store: Store) -> None:
    owner = await user(store)
    files = [
        (await store.create_file(owner, f"f{i}.txt", "text/plain", b"x")).id
        for i in range(MAX_CHAT_FILES + 1)
    ]
    chat = await store.create_chat(owner, naming(files[0], message="first"))
    lease = await acquire(store, chat.id)
    await store.commit_step(lease, new_id(), text_step())
    await store.finish_turn(lease)
    await store.send_message(chat.id, naming(*files[1:], message="the rest"))
    first, _answer, rest = (await store.load_history(chat.id)).messages
    assert first.content[0] == TextPart(
        "[The attached file 'f0.txt' is no longer available: a chat keeps its "
        f"{MAX_CHAT_FILES} most recent files.]"
    )
    assert first.content[1:] == text("first")
    assert all(isinstance(part, FilePart) and part.data == b"x" for part in rest.content[:-1])


async def test_migration_0006_adds_the_file_tables_and_downgrades_without_losing_chats(
    backend: Backend,
) -> None:
    db = Database(await backend.empty_url())
    try:
        await upgrade(db)  # the store's code needs every later column
        store = Store(db)
        owner = await user(store)
        chat = await store.create_chat(owner, text("before files"))
        file = await store.create_file(owner, "big.bin.txt", "text/plain", bytes(range(9, 127)) * 9)
        await store.send_message(chat.id, naming(file.id))
        assert (await store.read_file(file.id, owner_id=owner))[1] == bytes(range(9, 127)) * 9

        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0005"))
        assert await current_revision(db) == "0005"
        async with db.read() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            kept = await conn.scalar(
                sa.text("SELECT count(*) FROM chats WHERE id = :id"), {"id": chat.id}
            )
        assert "chat_files" not in tables
        assert "chat_file_links" not in tables
        assert kept == 1  # the chats table was not copied or cascaded away
    finally:
        await db.dispose()


async def test_an_edit_keeps_the_messages_files_unless_told_otherwise(store: Store) -> None:
    owner = await user(store)
    shot = await store.create_file(owner, "shot.png", "image/png", PNG)
    notes = await store.create_file(owner, "notes.txt", "text/plain", b"notes")
    chat = await store.create_chat(owner, naming(shot.id, message="what is this?"))
    [first] = await store.list_messages(chat.id)
    kept = await store.edit_message(chat.id, first.id, text("and now?"), keep_files=True)
    assert kept.message is not None
    assert kept.message.parts == [
        FilePart(file_id=shot.id, filename="shot.png", media_type="image/png"),
        TextPart("and now?"),
    ]
    replaced = await store.edit_message(chat.id, kept.message.id, naming(notes.id, message="x"))
    assert replaced.message is not None
    assert [p.filename for p in replaced.message.parts if isinstance(p, FilePart)] == ["notes.txt"]
    [prompt] = (await store.load_history(chat.id)).messages
    assert prompt.content[0] == FilePart(b"notes", "text/plain", "notes.txt", file_id=notes.id)
