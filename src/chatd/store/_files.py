"""Uploaded files (`chat_files`) and the links that put them in chats (`chat_file_links`).

A file belongs to the user who uploaded it and is readable by them alone. A message
names files by id; the transaction that stores the message checks the sender owns
each one, fills in its name and media type, and links it to the chat: at most
`MAX_CHAT_FILES` links a chat, the oldest evicted. `load_history` gives the model the
bytes of linked files only, so an evicted file is no longer sent. This module stores
what it is given: the size limit and the media type check are the API's.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.store._base import StoreBase
from chatd.store._errors import InvalidRequest, NotFound
from chatd.store._ids import new_id
from chatd.store._models import ChatFile
from chatd.store._schema import chat_file_links, chat_files
from chatd.types import FilePart, Message, MessagePart, TextPart

__all__ = ["MAX_CHAT_FILES", "Files", "link_files", "load_file_data"]

# 50 files a chat (upstream's MaxChatFileIDs); linking one more evicts the oldest link.
MAX_CHAT_FILES = 50
_META = (
    chat_files.c.id,
    chat_files.c.owner_id,
    chat_files.c.name,
    chat_files.c.media_type,
    chat_files.c.size,
    chat_files.c.created_at,
)


def _uploaded(parts: Sequence[MessagePart]) -> list[str]:
    """The ids of the uploaded files `parts` name, each once, in order."""
    ids = (p.file_id for p in parts if isinstance(p, FilePart) and p.file_id)
    return list(dict.fromkeys(ids))


class Files(StoreBase):
    async def create_file(self, owner_id: str, name: str, media_type: str, data: bytes) -> ChatFile:
        """Store an upload of `owner_id`'s; it is in no chat until a message names it."""
        file = ChatFile(
            id=new_id(),
            owner_id=owner_id,
            name=name,
            media_type=media_type,
            size=len(data),
            created_at=self.clock(),
        )
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(chat_files).values(**msgspec.structs.asdict(file), data=data)
            )
        return file

    async def read_file(self, file_id: str, *, owner_id: str) -> tuple[ChatFile, bytes]:
        """The file and its bytes; `NotFound` for an unknown id and for another user's file."""
        query = sa.select(*_META, chat_files.c.data).where(
            chat_files.c.id == file_id, chat_files.c.owner_id == owner_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound("file", file_id)
        values = dict(row)
        data = bytes(values.pop("data"))
        return ChatFile(**values), data

    async def chat_file_ids(self, chat_id: str) -> list[str]:
        """The files linked to the chat, oldest link first."""
        links = chat_file_links.c
        query = sa.select(links.file_id).where(links.chat_id == chat_id).order_by(links.position)
        async with self.db.read() as conn:
            return list((await conn.execute(query)).scalars())


async def link_files(
    conn: AsyncConnection, chat_id: str, owner_id: str, parts: list[MessagePart]
) -> list[MessagePart]:
    """`parts` with each uploaded file's name and media type, the files linked to the chat.

    Runs in the transaction that stores the message, so a refusal stores nothing. A
    file already linked moves to the newest link; past `MAX_CHAT_FILES` the oldest
    links go. `InvalidRequest` when a file is unknown or not `owner_id`'s.
    """
    ids = _uploaded(parts)
    if not ids:
        return parts
    c = chat_files.c
    rows = await conn.execute(
        sa.select(c.id, c.name, c.media_type).where(c.id.in_(ids), c.owner_id == owner_id)
    )
    found = {row.id: (row.name, row.media_type) for row in rows}
    unknown = [file_id for file_id in ids if file_id not in found]
    if unknown:
        raise InvalidRequest(
            "invalid_request",
            "Name only files you uploaded (POST /api/chats/files) in file_ids; "
            f"unknown: {', '.join(unknown)}.",
        )
    links = chat_file_links.c
    current = await conn.execute(
        sa.select(links.file_id, links.position).where(links.chat_id == chat_id)
    )
    linked: dict[str, int] = {file_id: position for file_id, position in current}
    position = max(linked.values(), default=0)
    for file_id in ids:
        position += 1
        if file_id in linked:
            await conn.execute(
                sa.update(chat_file_links)
                .where(links.chat_id == chat_id, links.file_id == file_id)
                .values(position=position)
            )
        else:
            await conn.execute(
                sa.insert(chat_file_links).values(
                    chat_id=chat_id, file_id=file_id, position=position
                )
            )
        linked[file_id] = position
    if len(linked) > MAX_CHAT_FILES:
        oldest = sorted(linked, key=linked.__getitem__)[: len(linked) - MAX_CHAT_FILES]
        await conn.execute(
            sa.delete(chat_file_links).where(links.chat_id == chat_id, links.file_id.in_(oldest))
        )
    return [
        msgspec.structs.replace(p, filename=found[p.file_id][0], media_type=found[p.file_id][1])
        if isinstance(p, FilePart) and p.file_id in found
        else p
        for p in parts
    ]


def _unavailable(part: FilePart) -> TextPart:
    return TextPart(
        f"[The attached file {part.filename!r} is no longer available: a chat keeps its "
        f"{MAX_CHAT_FILES} most recent files.]"
    )


async def load_file_data(
    conn: AsyncConnection, chat_id: str, messages: list[Message]
) -> list[Message]:
    """`messages` with the bytes of every uploaded file still linked to the chat; a file
    no longer linked (evicted) becomes a note saying so."""
    ids = list(dict.fromkeys(fid for m in messages for fid in _uploaded(m.content)))
    if not ids:
        return messages
    links = chat_file_links.c
    rows = await conn.execute(
        sa.select(chat_files.c.id, chat_files.c.data)
        .join(chat_file_links, links.file_id == chat_files.c.id)
        .where(links.chat_id == chat_id, chat_files.c.id.in_(ids))
    )
    data = {row.id: bytes(row.data) for row in rows}
    out = []
    for message in messages:
        if not _uploaded(message.content):
            out.append(message)
            continue
        content: list[MessagePart] = [
            (
                (
                    msgspec.structs.replace(p, data=data[p.file_id])
                    if p.file_id in data
                    else _unavailable(p)
                )
                if isinstance(p, FilePart) and p.file_id
                else p
            )
            for p in message.content
        ]
        out.append(msgspec.structs.replace(message, content=content))
    return out
