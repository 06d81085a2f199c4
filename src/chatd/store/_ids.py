"""Identifiers: UUIDv7 strings (time-ordered, so lists sort by creation) and token hashing.

Python 3.11's `uuid` has no v7; this is the RFC 9562 layout with a millisecond
timestamp and a per-process counter in `rand_a`, so ids made in the same
millisecond by one process still sort in creation order.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

__all__ = ["new_id", "sha256_hex"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id() -> str:
    """A fresh UUIDv7 as a lowercase string."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
