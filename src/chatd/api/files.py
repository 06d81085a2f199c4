"""Uploaded files (issue 22): `POST /api/chats/files` and `GET /api/chats/files/{id}`.

An upload is multipart/form-data with the file in the field `file`. It is parsed as
it arrives and refused (413) the moment the file passes `MAX_FILE_BYTES`, so no
request holds more than one file's worth of bytes. The media type comes from the
file's first bytes, never from its name or the part's Content-Type: PNG, JPEG, GIF
and WebP images, PDF, and UTF-8 text; anything else is 415. A file is read back
by its uploader only (404 to anyone else). Which messages name it is the store's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from chatd.api.deps import User, app_state
from chatd.api.errors import ApiError
from chatd.api.schemas import MAX_FILE_BYTES, json_response
from chatd.store import ChatFile
from chatd.stream.wire import timestamp

if TYPE_CHECKING:  # the TypedDict exists for type checkers only
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["ACCEPTED_MEDIA_TYPES", "router", "sniff_media_type"]

router = APIRouter(prefix="/api/chats/files", tags=["files"])

# What upstream's chats accept: images a model can see, PDF documents, plain text.
ACCEPTED_MEDIA_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
)
# 255 characters: the name column's limit.
_MAX_NAME = 255
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
# The bytes that make content binary rather than text (WHATWG MIME sniffing): the C0
# controls except tab, newline, form feed, carriage return and escape. UTF-8 never
# uses them inside a multi-byte character, so the raw bytes can be searched.
_BINARY_BYTES = bytes(sorted(set(range(32)) - {0x09, 0x0A, 0x0C, 0x0D, 0x1B}))


def sniff_media_type(data: bytes) -> str | None:
    """The accepted media type `data` is, judged by its bytes alone; None if none."""
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if len(data.translate(None, _BINARY_BYTES)) != len(data):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain"


def file_json(file: ChatFile) -> dict[str, Any]:
    return {
        "id": file.id,
        "name": file.name,
        "media_type": file.media_type,
        "size": file.size,
        "created_at": timestamp(file.created_at),
    }


def _too_large() -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"The file is too large; upload at most {MAX_FILE_BYTES // (1 << 20)} MiB.",
        f"the limit is {MAX_FILE_BYTES} bytes a file",
    )


def _clean_name(raw: bytes) -> str:
    """The uploaded name without directories or control characters; "file" when empty."""
    name = raw.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if char.isprintable()).strip()
    return name[:_MAX_NAME] or "file"


class _FileField:
    """The multipart body's `file` field, collected as the body streams in."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.data = bytearray()
        self.complete = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._in_file = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and self.name is None:
            self._in_file = True
            self.name = _clean_name(options.get(b"filename", b""))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        if len(self.data) + (end - start) > MAX_FILE_BYTES:
            raise _too_large()
        self.data += data[start:end]

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.complete = True


async def _read_file_field(request: Request) -> tuple[str, bytes]:
    """The uploaded file's name and bytes, read without ever holding more than the limit."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the file as multipart/form-data in the field 'file'.",
            "no multipart boundary in the content type",
        )
    field = _FileField()
    parser = MultipartParser(boundary, field.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise ApiError(
            400, "invalid_request", "The multipart body is malformed; send it again.", str(err)
        ) from None
    if not field.complete or field.name is None:
        raise ApiError(
            422,
            "invalid_request",
            "Send the file in the multipart field 'file'.",
            "no complete field named 'file' in the body",
        )
    return field.name, bytes(field.data)


@router.post("", status_code=201)
async def upload_file(request: Request, user: User) -> Response:
    """Upload one file (multipart field `file`, at most 10 MiB); name it in a message's
    `file_ids` to send it."""
    name, data = await _read_file_field(request)
    if not data:
        raise ApiError(422, "invalid_request", "The file is empty; upload a file with content.")
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "Upload a PNG, JPEG, GIF or WebP image, a PDF, or a UTF-8 text file.",
            f"the content of {name!r} is none of {', '.join(ACCEPTED_MEDIA_TYPES)}",
        )
    file = await app_state(request).store.create_file(user.user_id, name, media_type, data)
    return json_response(file_json(file), 201, {"Location": f"/api/chats/files/{file.id}"})


@router.get("/{file_id}")
async def download_file(file_id: str, request: Request, user: User) -> Response:
    """The file's bytes, to the user who uploaded it."""
    file, data = await app_state(request).store.read_file(file_id, owner_id=user.user_id)
    return Response(
        data,
        media_type=file.media_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(file.name)}",
            "Cache-Control": "private, max-age=3600",
            # Served from the API's origin: never let a browser run it (the request
            # middleware adds nosniff, so it is never re-typed either).
            "Content-Security-Policy": "sandbox",
        },
    )
