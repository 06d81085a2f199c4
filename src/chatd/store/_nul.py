"""How strings holding U+0000 round-trip on PostgreSQL, whose `text` and `jsonb` refuse it.

SQLite stores NUL like any character; PostgreSQL rejects it in text and rejects
the `\\u0000` escape in jsonb. So on PostgreSQL only, every string column and every
JSON document goes through a prefix-free code over two private-use characters:

| Python   | stored        |
|----------|---------------|
| U+0000   | U+E000        |
| U+E000   | U+E001 U+E000 |
| U+E001   | U+E001 U+E001 |

NUL keeps its length (a title of 256 NULs still fits its column), every other
character is stored as itself, and decoding gives back exactly what was written.
Strings without any of the three characters (all but a few) are passed through
after one scan. Nothing here knows about tables.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

__all__ = ["decode_json", "decode_text", "encode_json", "encode_json_text", "encode_text"]

_NUL, _E000, _E001 = "\x00", "\ue000", "\ue001"
_PRIVATE = str.maketrans({_E000: _E001 + _E000, _E001: _E001 + _E001})
_TEXT = str.maketrans({_NUL: _E000, _E000: _E001 + _E000, _E001: _E001 + _E001})
_STORED = re.compile(f"{_E001}([{_E000}{_E001}])|{_E000}")
# In JSON text NUL is the escape `\u0000`; one preceded by an odd run of
# backslashes is a literal backslash followed by "u0000".
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def encode_text(value: str) -> str:
    """A string as PostgreSQL stores it."""
    if _NUL in value or _E000 in value or _E001 in value:
        return value.translate(_TEXT)
    return value


def decode_text(value: str) -> str:
    """A stored string as it was written."""
    if _E000 in value or _E001 in value:
        return _STORED.sub(lambda m: m[1] or _NUL, value)
    return value


def encode_json(value: Any) -> str:
    """A JSON document as PostgreSQL's jsonb takes it (every string encoded)."""
    return encode_json_text(msgspec.json.encode(value).decode())


def encode_json_text(text: str) -> str:
    """`encode_json` of a document already encoded (by msgspec: NUL as `\\u0000`, every
    other non-ASCII character as itself)."""
    if "\\u0000" in text or _E000 in text or _E001 in text:
        return _JSON_NUL.sub(lambda m: m[1] + _E000, text.translate(_PRIVATE))
    return text


def decode_json(text: str) -> Any:
    """A stored jsonb document as it was written."""
    if _E000 in text or _E001 in text:
        text = _STORED.sub(lambda m: m[1] or "\\u0000", text)
    return msgspec.json.decode(text)
