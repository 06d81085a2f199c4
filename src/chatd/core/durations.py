"""Go-style durations ("30s", "5m", "1h30m", "500ms"), as tools and `wait_agent` take them."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from a duration string or a number of seconds; ValueError (naming
    `key`) for anything else or a negative duration."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            position, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != position:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                position = match.end()
            if position != len(text) or position == 0:
                raise ValueError(
                    f'{key} must be a duration such as "30s", "5m" or "1h30m", not {value!r}'
                ) from None
    else:
        raise ValueError(f'{key} must be a duration such as "30s" or "5m"')
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{key} must not be negative")
    return seconds
