"""Bounded capture of process output, and the cap applied to text a tool returns.

The model sees at most `MODEL_OUTPUT_CAP` bytes of a command's (or an MCP tool's)
output: the first half and the last half with a marker line saying how much was
left out, so the model always knows it was cut. Nothing here touches processes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODEL_OUTPUT_CAP", "CappedText", "OutputCapture", "cap_text"]

# 32 KiB: upstream's maxOutputToModel; the model gets the first and last 16 KiB.
MODEL_OUTPUT_CAP = 32 * 1024
_HALF = MODEL_OUTPUT_CAP // 2


@dataclass(frozen=True, slots=True)
class CappedText:
    """Text cut to the model cap; `original_bytes` > `kept_bytes` when something was cut."""

    text: str
    original_bytes: int
    kept_bytes: int

    @property
    def truncated(self) -> bool:
        return self.original_bytes > self.kept_bytes

    def truncation(self) -> dict[str, int] | None:
        """The `truncated` field of a result: None when nothing was cut."""
        if not self.truncated:
            return None
        return {"original_bytes": self.original_bytes, "kept_bytes": self.kept_bytes}


def _marker(omitted: int) -> str:
    return f"\n… [{omitted} bytes omitted] …\n"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class OutputCapture:
    """Keeps the first `head` bytes and the last `tail` bytes written, and the total count.

    Memory stays bounded however much a process prints; `render()` cuts what was
    kept to the model cap.
    """

    __slots__ = ("_head", "_head_limit", "_tail", "_tail_limit", "total")

    def __init__(self, *, head: int = _HALF, tail: int = _HALF) -> None:
        if head < _HALF or tail < _HALF:
            raise ValueError("an output capture must keep at least what the model is shown")
        self._head = bytearray()
        self._tail = bytearray()
        self._head_limit = head
        self._tail_limit = tail
        self.total = 0

    def write(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            excess = len(self._tail) - self._tail_limit
            if excess > 0:
                del self._tail[:excess]

    def render(self) -> CappedText:
        """Everything if it fits the model cap, else the first and last 16 KiB and a marker."""
        if self.total <= MODEL_OUTPUT_CAP:
            text = _decode(bytes(self._head + self._tail))
            return CappedText(text, self.total, self.total)
        first = bytes(self._head[:_HALF])
        last = bytes(self._tail[-_HALF:])
        kept = len(first) + len(last)
        text = _decode(first) + _marker(self.total - kept) + _decode(last)
        return CappedText(text, self.total, kept)


def cap_text(text: str) -> CappedText:
    """`text` cut to the model cap the same way as process output."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= MODEL_OUTPUT_CAP:
        return CappedText(text, len(data), len(data))
    capture = OutputCapture()
    capture.write(data)
    return capture.render()
