"""The raw evidence `chatd.errors.classify` weighs: text patterns and structured details.

This module finds things in an exception (status codes, provider names, retry-after
delays, provider detail text, and which phrase tables match) and answers yes/no
questions about them. It must not decide a kind or write a user-facing sentence;
the rule order and the wording live in `chatd.errors`, in one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# An explicit "status 429" / "status code: 503" / "http 500" wins over a bare number.
STATUS_PATTERN = re.compile(r"(?:status(?:\s+code)?|http)\s*[:=]?\s*(\d{3})", re.ASCII)
# Bare numbers are only trusted for the codes the rules care about.
STANDALONE_STATUS_PATTERN = re.compile(r"\b(?:401|403|408|429|500|502|503|504|529)\b", re.ASCII)

# First match wins: the more specific names come before the ones they contain
# ("azure openai" before "openai", "openrouter" before the vendors it routes to).
PROVIDER_HINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("openai-compat", ("openai-compat", "openai compatible")),
    ("azure", ("azure openai", "azure-openai")),
    ("openrouter", ("openrouter",)),
    ("bedrock", ("aws bedrock", "bedrock")),
    ("vercel", ("vercel ai gateway", "vercel")),
    ("anthropic", ("anthropic", "claude")),
    ("google", ("google", "gemini", "vertex")),
    ("openai", ("openai",)),
)
_PROVIDER_ALIASES = {
    "azure openai": "azure",
    "azure-openai": "azure",
    "openai compat": "openai-compat",
    "openai compatible": "openai-compat",
    "openai_compat": "openai-compat",
}
_DISPLAY_NAMES = {
    "anthropic": "Anthropic",
    "azure": "Azure OpenAI",
    "bedrock": "AWS Bedrock",
    "google": "Google",
    "openai": "OpenAI",
    "openai-compat": "OpenAI Compatible",
    "openrouter": "OpenRouter",
    "vercel": "Vercel AI Gateway",
}

INTERRUPTED = ("chat interrupted", "request interrupted", "operation interrupted")
OVERLOADED = ("overloaded",)
# insufficient_quota is hard exhaustion at any status; the softer words are ignored
# on a 429, where "quota" usually means a per-minute rate limit.
USAGE_LIMIT_ANY_STATUS = ("insufficient_quota",)
USAGE_LIMIT = ("quota", "billing", "payment required")
AUTH_STRONG = ("authentication", "unauthorized", "invalid api key", "invalid_api_key")
AUTH_WEAK = ("forbidden",)
RATE_LIMIT = ("rate limit", "rate_limit", "rate limited", "rate-limited", "too many requests")
# The AI gateway's error code for a configured-but-disabled provider (sent with a 503).
PROVIDER_DISABLED = ("provider_disabled",)
DEADLINE = ("context deadline exceeded", "deadline exceeded")
TIMEOUT = (
    "timeout",
    "timed out",
    "service unavailable",
    "unavailable",
    "connection reset",
    "connection refused",
    "eof",
    "broken pipe",
    "bad gateway",
    "gateway timeout",
    # Every HTTP/2 ClientConn failure: "client conn is closed", "... not usable",
    # "client connection force closed via ClientConn.Close", "client connection lost".
    "client conn",
    "goaway",
    "http2: stream closed",
    "use of closed network connection",
    # HTTP/2 RST_STREAM codes worth a retry, as bridges flatten them into text.
    "internal_error; received from peer",
    "refused_stream; received from peer",
    "cancel; received from peer",
    "enhance_your_calm; received from peer",
    "no_error; received from peer",
)
CONFIG = (
    "invalid model",
    "model not found",
    "model_not_found",
    "unsupported model",
    "context length exceeded",
    "context_exceeded",
    "maximum context length",
    "malformed config",
    "malformed configuration",
)
GENERIC_RETRYABLE = ("server error", "internal server error")
CANCELED = ("context canceled", "cancelled", "canceled")

# OpenAI Responses continuity failures: the detail names the match, never the
# provider's item ids, so operators can grep for it and clients can see it.
CONTINUITY_DIAGNOSTICS = (
    (
        "no tool output found for function call",
        "OpenAI Responses API request continuity diagnostic: match=function_call_output_missing.",
    ),
    (
        "was provided without its required 'reasoning' item",
        "OpenAI Responses API request continuity diagnostic: match=web_search_reasoning_missing.",
    ),
)
# Truncated provider streams, checked before the broad "eof" timeout text.
STREAM_TRUNCATION = (
    ("anthropic stream closed before message_stop", "anthropic"),
    ("openai responses stream closed before terminal event", "openai"),
)


def contains_any(text: str, patterns: Iterable[str]) -> bool:
    return any(pattern in text for pattern in patterns)


def is_chain_broken(text: str) -> bool:
    """The provider lost the `previous_response_id` a chained turn pointed at."""
    return ("previous response" in text or "previous_response" in text) and "not found" in text


def normalize_provider(provider: str) -> str:
    normalized = provider.strip().lower()
    return _PROVIDER_ALIASES.get(normalized, normalized)


def known_display_name(provider: str) -> str:
    """The product name of a provider id, or "" when chatd does not know it."""
    return _DISPLAY_NAMES.get(normalize_provider(provider), "")


def provider_from_text(lower: str) -> str:
    for provider, patterns in PROVIDER_HINTS:
        if contains_any(lower, patterns):
            return provider
    return ""


def status_from_text(lower: str) -> int:
    if match := STATUS_PATTERN.search(lower):
        return int(match.group(1))
    for match in STANDALONE_STATUS_PATTERN.finditer(lower):
        if not _is_port_or_stream_id(lower, match.start()):
            return int(match.group())
    return 0


def _is_port_or_stream_id(lower: str, start: int) -> bool:
    # "10.0.0.1:503" is a port, and Go's HTTP/2 resets say "stream ID 429"; a later
    # number in the same text may still be a real status, so the caller keeps scanning.
    if start > 0 and lower[start - 1] == ":":
        return True
    prefix = lower[:start].rstrip().rstrip(":=").rstrip()
    return prefix.endswith("stream id")


def error_chain(error: BaseException) -> list[BaseException]:
    """`error` and what caused it, outermost first, as Python's traceback shows them."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__
    return chain


def chain_text(chain: Iterable[BaseException]) -> str:
    """The chain's messages joined Go-style ("outer: inner"), skipping repeats.

    Python's `raise A from B` leaves B's text out of `str(A)`, where Go's wrapped
    errors carry it; the rules were written against the Go text.
    """
    parts: list[str] = []
    for error in chain:
        message = str(error).strip()
        if message and not any(message in part for part in parts):
            parts.append(message)
    return ": ".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderDetails:
    """What a typed provider error (an SDK's status error, `httpx`'s) says outright."""

    status_code: int = 0
    detail: str = ""
    retry_after: float = 0.0

    @property
    def is_empty(self) -> bool:
        return not self.status_code and not self.detail and self.retry_after <= 0


def provider_details(chain: Iterable[BaseException]) -> ProviderDetails:
    """Duck-typed status, detail and retry-after; the outermost error carrying each wins."""
    status_code, detail, retry_after = 0, "", 0.0
    for error in chain:
        status_code = status_code or _status_attribute(error)
        detail = detail or _detail_attribute(error)
        retry_after = retry_after or _retry_after_attribute(error)
    return ProviderDetails(status_code=status_code, detail=detail, retry_after=retry_after)


def _http_status(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return 0


def _status_attribute(error: BaseException) -> int:
    response = getattr(error, "response", None)
    return (
        _http_status(getattr(error, "status_code", None))
        or _http_status(getattr(error, "code", None))
        or _http_status(getattr(response, "status_code", None))
    )


def _detail_attribute(error: BaseException) -> str:
    if detail := _body_message(getattr(error, "body", None)):
        return detail
    message = getattr(error, "message", None)
    return message.strip() if isinstance(message, str) else ""


def _body_message(body: object) -> str:
    """The message of a JSON error body: `{"error": {"message"}}` first, then `{"message"}`."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return ""
    if not isinstance(body, Mapping):
        return ""
    nested = body.get("error")
    candidates = [body.get("message")]
    if isinstance(nested, Mapping):
        candidates.insert(0, nested.get("message"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return ""


def _retry_after_attribute(error: BaseException) -> float:
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite_positive(float(value))
    response = getattr(error, "response", None)
    return retry_after_from_headers(getattr(response, "headers", None))


def retry_after_from_headers(headers: object) -> float:
    """Seconds from `retry-after-ms` (OpenAI) or `retry-after` (seconds or HTTP-date)."""
    items = getattr(headers, "items", None)
    if not callable(items):
        return 0.0
    values = {str(key).lower(): str(value).strip() for key, value in items()}
    try:
        milliseconds = _finite_positive(float(values.get("retry-after-ms", "")))
    except ValueError:
        milliseconds = 0.0
    if milliseconds:
        return milliseconds / 1000
    raw = values.get("retry-after", "")
    with contextlib.suppress(ValueError):  # not seconds: maybe an HTTP date
        return _finite_positive(float(raw))
    try:
        retry_at = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if retry_at.tzinfo is None:
        retry_at = retry_at.replace(tzinfo=UTC)
    return _finite_positive((retry_at - datetime.now(UTC)).total_seconds())


def _finite_positive(seconds: float) -> float:
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0
