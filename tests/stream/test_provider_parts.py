"""Provider-executed parts in the JSON views: committed messages and the live stream."""

from __future__ import annotations

from chatd.stream.wire import live_part, part_json
from chatd.types import ToolCallPart, ToolResultPart, ToolResultText

SOURCES = [{"url": "https://example.com/a", "title": "A <b>"}]


def test_a_provider_executed_result_carries_its_sources_committed_and_live() -> None:
    result = ToolResultPart(
        "ws1",
        "web_search",
        provider_executed=True,
        provider_metadata={"anthropic": {"content": {"secret": "x"}}, "sources": SOURCES},
    )
    expected = {
        "type": "tool_result",
        "tool_call_id": "ws1",
        "tool_name": "web_search",
        "result": None,
        "provider_executed": True,
        "sources": SOURCES,
    }
    assert part_json(result) == expected
    assert live_part(result) == {**expected, "is_error": False}  # no provider metadata
    call = ToolCallPart("ws1", "web_search", '{"query": "q"}', provider_executed=True)
    assert live_part(call)["provider_executed"] is True


def test_sources_are_only_urls_and_titles_and_local_results_have_none() -> None:
    odd = ToolResultPart(
        "ws1",
        "web_search",
        provider_executed=True,
        provider_metadata={"sources": [{"title": "no url"}, "text", {"url": "u", "x": 1}]},
    )
    assert part_json(odd)["sources"] == [{"url": "u", "title": ""}]
    broken = ToolResultPart("ws2", provider_executed=True, provider_metadata={"sources": "x"})
    assert part_json(broken)["sources"] == []
    local = ToolResultPart("c1", "read_file", ToolResultText("ok"))
    assert "sources" not in part_json(local)
