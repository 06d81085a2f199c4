"""Converting MCP tool results to chatd results (spec §7.4), block type by block type."""

from __future__ import annotations

import base64

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    TextContent,
)

from chatd.tools._mcp_sdk import describe_error, to_response
from chatd.types import ToolResultError, ToolResultMedia, ToolResultText

PNG = base64.b64encode(b"png-bytes").decode()


def test_text_blocks_are_joined() -> None:
    result = CallToolResult(content=[TextContent(text="one"), TextContent(text="two")])
    assert to_response(result).to_output() == ToolResultText("one\ntwo")


def test_structured_content_is_json_text_when_there_is_no_text() -> None:
    result = CallToolResult(content=[], structured_content={"answer": 42, "ok": True})
    assert to_response(result).to_output() == ToolResultText('{"answer": 42, "ok": true}')


def test_is_error_becomes_an_error_result() -> None:
    failed = CallToolResult(content=[TextContent(text="bad input")], is_error=True)
    assert to_response(failed).to_output() == ToolResultError("bad input")
    silent = CallToolResult(content=[], is_error=True)
    assert "without a message" in (to_response(silent).to_output().error or "")  # type: ignore[union-attr]


def test_audio_and_blob_resources_are_media_and_extra_media_is_mentioned() -> None:
    result = CallToolResult(
        content=[
            AudioContent(data=PNG, mime_type="audio/wav"),
            EmbeddedResource(resource=BlobResourceContents(uri="file:///x.bin", blob=PNG)),
        ]
    )
    output = to_response(result).to_output()
    assert isinstance(output, ToolResultMedia)
    assert output.media_type == "audio/wav"
    assert base64.b64decode(output.data) == b"png-bytes"
    assert output.text == "[1 more media items were not shown]"

    blob_only = CallToolResult(
        content=[EmbeddedResource(resource=BlobResourceContents(uri="file:///x", blob=PNG))]
    )
    blob = to_response(blob_only).to_output()
    assert isinstance(blob, ToolResultMedia)
    assert blob.media_type == "application/octet-stream"


def test_media_that_is_not_base64_is_dropped_with_a_note() -> None:
    result = CallToolResult(content=[ImageContent(data="***", mime_type="image/png")])
    assert to_response(result).to_output() == ToolResultText(
        "[image/png content that is not valid base64 was dropped]"
    )


def test_describe_error_looks_inside_exception_groups() -> None:
    group = ExceptionGroup("outer", [ConnectionError("refused")])
    assert describe_error(group) == "ConnectionError: refused"
    assert describe_error(TimeoutError()) == "TimeoutError"
