"""Cost of building one stream part in each candidate representation (docs/design-notes.md).

Run: `.venv/bin/python -m benchmarks.types_repr` (pydantic is measured only if installed).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import timeit

import msgspec

from chatd.types import StreamPart, StreamPartType

N = 300_000


@dataclasses.dataclass(slots=True)
class _Slots:
    type: str
    id: str = ""
    delta: str = ""


@dataclasses.dataclass(slots=True, frozen=True)
class _Frozen:
    type: str
    id: str = ""
    delta: str = ""


class _Msgspec(msgspec.Struct, frozen=True):
    type: str
    id: str = ""
    delta: str = ""


def main() -> None:
    cases = {
        "chatd.types.StreamPart (msgspec)": lambda: StreamPart(
            StreamPartType.TEXT_DELTA, id="t", delta="hi"
        ),
        "msgspec Struct (3 fields)": lambda: _Msgspec("text_delta", id="t", delta="hi"),
        "dataclass(slots)": lambda: _Slots("text_delta", id="t", delta="hi"),
        "dataclass(slots, frozen)": lambda: _Frozen("text_delta", id="t", delta="hi"),
    }
    if importlib.util.find_spec("pydantic") is not None:
        import pydantic

        class _Pydantic(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(frozen=True)
            type: str
            id: str = ""
            delta: str = ""

        cases["pydantic BaseModel (frozen)"] = lambda: _Pydantic(
            type="text_delta", id="t", delta="hi"
        )
    base = None
    for name, fn in cases.items():
        ns = min(timeit.repeat(fn, number=N, repeat=5)) / N * 1e9
        base = base or ns
        print(f"{name:36s} {ns:8.0f} ns   ({ns / base:.1f}x chatd)")


if __name__ == "__main__":
    main()
