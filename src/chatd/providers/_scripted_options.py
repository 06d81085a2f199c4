"""The scripted model built from a model config's `options`, read strictly.

The same reader serves the worker (building a chat's model) and the admin routes
(refusing a config at create/update), so an option the worker could not use is a
422 naming it, never a turn that fails later. It raises `InvalidOptions` for an
unknown option, a wrong type or a value out of range; it does no I/O.

| option           | type                 | meaning                                            |
|------------------|----------------------|----------------------------------------------------|
| `delta_delay`    | number ≥ 0           | seconds between streamed words                     |
| `stamp_deltas`   | boolean              | each text delta is its emit time (load tests)      |
| `script`         | list of replies      | one reply per model call; the last one repeats     |

A reply is an object with `text`, `reasoning` (strings), `first_part_delay`
(number ≥ 0), `tool_calls` (a list of `[name, arguments]`, the arguments a JSON
string or object) and `error` (`status_code` 400-599, `message`, `retry_after`
≥ 0, `after_parts` ≥ 0: stream that many parts, then drop the connection).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from chatd.providers._config import InvalidOptions
from chatd.providers.scripted import InjectedError, ScriptedModel, ScriptedReply

__all__ = ["scripted_model"]

Path = tuple[str | int, ...]
_OPTIONS = ("delta_delay", "script", "stamp_deltas")
_REPLY = ("error", "first_part_delay", "reasoning", "text", "tool_calls")
_ERROR = ("after_parts", "message", "retry_after", "status_code")


def scripted_model(model: str, options: Mapping[str, Any]) -> ScriptedModel:
    """The scripted model `options` describe; `InvalidOptions` names the first bad field."""
    _known(options, (), _OPTIONS)
    delay = _number(options, (), "delta_delay", 0.0)
    script = options.get("script", [])
    if not isinstance(script, list):
        raise InvalidOptions(("script",), "expected a list of replies")
    replies = [_reply(entry, ("script", i), delay) for i, entry in enumerate(script)]
    stamp = options.get("stamp_deltas", False)
    if not isinstance(stamp, bool):
        raise InvalidOptions(("stamp_deltas",), "expected true or false")
    return ScriptedModel(model_name=model, script=replies, delta_delay=delay, stamp_deltas=stamp)


def _reply(entry: object, path: Path, delay: float) -> ScriptedReply:
    if not isinstance(entry, dict):
        raise InvalidOptions(path, "expected an object (text, reasoning, tool_calls, error)")
    _known(entry, path, _REPLY)
    error = entry.get("error")
    return ScriptedReply(
        text=_string(entry, path, "text"),
        reasoning=_string(entry, path, "reasoning"),
        tool_calls=_tool_calls(entry.get("tool_calls", []), (*path, "tool_calls")),
        error=None if error is None else _error(error, (*path, "error")),
        first_part_delay=_number(entry, path, "first_part_delay", 0.0),
        delta_delay=delay,
    )


def _tool_calls(calls: object, path: Path) -> list[tuple[str, str]]:
    if not isinstance(calls, list):
        raise InvalidOptions(path, "expected a list of [name, arguments] pairs")
    out = []
    for i, call in enumerate(calls):
        if not (isinstance(call, list) and len(call) == 2 and isinstance(call[0], str)):
            raise InvalidOptions((*path, i), "expected [name, arguments]")
        name, arguments = call
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        elif not isinstance(arguments, str):
            raise InvalidOptions((*path, i, 1), "expected a JSON string or object")
        out.append((name, arguments))
    return out


def _error(error: object, path: Path) -> InjectedError:
    if not isinstance(error, dict):
        raise InvalidOptions(path, "expected an object (status_code, message, ...)")
    _known(error, path, _ERROR)
    default = InjectedError()
    status = _integer(error, path, "status_code", default.status_code)
    if not 400 <= status <= 599:
        raise InvalidOptions((*path, "status_code"), "expected an HTTP error status, 400-599")
    return InjectedError(
        status_code=status,
        message=_string(error, path, "message", default.message),
        retry_after=_number(error, path, "retry_after", default.retry_after),
        after_parts=_integer(error, path, "after_parts", default.after_parts),
    )


def _known(value: Mapping[str, Any], path: Path, names: tuple[str, ...]) -> None:
    for key in value:
        if key not in names:
            raise InvalidOptions((*path, key), f"unknown option; known: {', '.join(names)}")


def _string(value: Mapping[str, Any], path: Path, key: str, default: str = "") -> str:
    found = value.get(key, default)
    if not isinstance(found, str):
        raise InvalidOptions((*path, key), "expected a string")
    return found


def _number(value: Mapping[str, Any], path: Path, key: str, default: float) -> float:
    found = value.get(key, default)
    # bool is an int to Python, never a duration to anyone writing JSON.
    if (
        isinstance(found, bool)
        or not isinstance(found, int | float)
        or not math.isfinite(found)
        or found < 0
    ):
        raise InvalidOptions((*path, key), "expected a number of seconds, 0 or more")
    return float(found)


def _integer(value: Mapping[str, Any], path: Path, key: str, default: int) -> int:
    found = value.get(key, default)
    if isinstance(found, bool) or not isinstance(found, int) or found < 0:
        raise InvalidOptions((*path, key), "expected a whole number, 0 or more")
    return found
