"""Behaviour of `chatd.errors`: classification rules and their order, normalisation,
pre-classification, structured provider details and the user-facing sentences."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

import chatd.errors
from chatd.errors import (
    ClassifiedError,
    ClassifiedException,
    ErrorKind,
    ProviderTransportReset,
    classify,
    display_name,
    retry_message,
    terminal_message,
    with_classification,
)

CANCELED = "The request was canceled before it completed."
CONTINUITY = (
    "The chat continuation failed due to an internal state mismatch. "
    "This is not a configuration or billing issue."
)
CHAIN_BROKEN = "The chat continuation was lost by the provider; retrying with the full history."


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` as Python leaves it after `raise outer from inner`."""
    try:
        raise outer from inner
    except BaseException as error:
        return error


def during(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised while handling `inner` (implicit `__context__`)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is the point
    except BaseException as error:
        return error


class FakeProviderError(Exception):
    """Shaped like the openai/anthropic SDK status errors, duck-typed by `classify`."""

    def __init__(
        self,
        text: str = "",
        *,
        status_code: object = None,
        code: object = None,
        response_status: object = None,
        headers: Mapping[str, str] | None = None,
        body: object = None,
        message: object = None,
        retry_after: object = None,
    ) -> None:
        super().__init__(text)
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        if response_status is not None or headers is not None:
            self.response = SimpleNamespace(status_code=response_status, headers=headers or {})
        if body is not None:
            self.body = body
        if message is not None:
            self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


# ── the module surface ────────────────────────────────────────────────────────


def test_all_is_sorted_and_importable() -> None:
    assert chatd.errors.__all__ == sorted(chatd.errors.__all__)
    for name in chatd.errors.__all__:
        assert hasattr(chatd.errors, name), name


def test_error_kinds_are_the_stable_snake_case_strings() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "overloaded",
        "rate_limit",
        "timeout",
        "startup_timeout",
        "stream_silence_timeout",
        "usage_limit",
        "auth",
        "config",
        "provider_disabled",
        "content_filter",
        "missing_key",
        "requires_action_timeout",
        "internal",
        "generic",
    ]
    assert ErrorKind("rate_limit") is ErrorKind.RATE_LIMIT


# ── every signal phrase, alone ───────────────────────────────────────────────

PATTERN_CASES = [
    ("overloaded", "overloaded", True),
    ("rate limit", "rate_limit", True),
    ("rate_limit", "rate_limit", True),
    ("rate limited", "rate_limit", True),
    ("rate-limited", "rate_limit", True),
    ("too many requests", "rate_limit", True),
    ("timeout", "timeout", True),
    ("timed out", "timeout", True),
    ("service unavailable", "timeout", True),
    ("unavailable", "timeout", True),
    ("connection reset", "timeout", True),
    ("connection refused", "timeout", True),
    ("eof", "timeout", True),
    ("broken pipe", "timeout", True),
    ("bad gateway", "timeout", True),
    ("gateway timeout", "timeout", True),
    ("client conn", "timeout", True),
    ("goaway", "timeout", True),
    ("http2: stream closed", "timeout", True),
    ("use of closed network connection", "timeout", True),
    ("stream error: INTERNAL_ERROR; received from peer", "timeout", True),
    ("stream error: REFUSED_STREAM; received from peer", "timeout", True),
    ("stream error: CANCEL; received from peer", "timeout", True),
    ("stream error: ENHANCE_YOUR_CALM; received from peer", "timeout", True),
    ("stream error: NO_ERROR; received from peer", "timeout", True),
    ("authentication", "auth", False),
    ("unauthorized", "auth", False),
    ("invalid api key", "auth", False),
    ("invalid_api_key", "auth", False),
    ("forbidden", "auth", False),
    ("quota", "usage_limit", False),
    ("billing", "usage_limit", False),
    ("insufficient_quota", "usage_limit", False),
    ("payment required", "usage_limit", False),
    ("provider_disabled", "provider_disabled", False),
    ("invalid model", "config", False),
    ("model not found", "config", False),
    ("model_not_found", "config", False),
    ("unsupported model", "config", False),
    ("context length exceeded", "config", False),
    ("context_exceeded", "config", False),
    ("maximum context length", "config", False),
    ("malformed config", "config", False),
    ("malformed configuration", "config", False),
    ("server error", "generic", True),
    ("internal server error", "generic", True),
    ("chat interrupted", "generic", False),
    ("request interrupted", "generic", False),
    ("operation interrupted", "generic", False),
    ("context deadline exceeded", "timeout", False),
    ("deadline exceeded", "timeout", False),
    ("context canceled", "generic", False),
    ("cancelled", "generic", False),
    ("canceled", "generic", False),
    ("status 408", "timeout", True),
    ("status 500", "generic", True),
    ("status 502", "timeout", True),
    ("status 503", "timeout", True),
    ("status 504", "timeout", True),
    ("status 529", "overloaded", True),
    ("status 401", "auth", False),
    ("status 403", "auth", False),
    ("status 429", "rate_limit", True),
    ("something nobody anticipated", "generic", False),
]


@pytest.mark.parametrize(("text", "kind", "retryable"), PATTERN_CASES)
def test_each_signal_alone_picks_its_kind(text: str, kind: str, retryable: bool) -> None:
    classified = classify(Exception(text))
    assert (classified.kind, classified.retryable) == (kind, retryable)


@pytest.mark.parametrize(("text", "kind", "retryable"), PATTERN_CASES)
def test_signals_match_regardless_of_case(text: str, kind: str, retryable: bool) -> None:
    classified = classify(Exception(text.upper()))
    assert (classified.kind, classified.retryable) == (kind, retryable)


# ── rule order: each case matches two rules and pins which one wins ───────────


@pytest.mark.parametrize(
    ("text", "kind", "retryable"),
    [
        pytest.param("chat interrupted: status 401", "generic", False, id="interrupted>auth"),
        pytest.param(
            "chat interrupted: no tool output found for function call",
            "generic",
            False,
            id="interrupted>continuity",
        ),
        pytest.param(
            "no tool output found for function call: status 429",
            "generic",
            False,
            id="continuity>rate_limit",
        ),
        pytest.param(
            "no tool output found for function call; previous response not found",
            "generic",
            False,
            id="continuity>chain_broken",
        ),
        pytest.param(
            "previous response not found: anthropic stream closed before message_stop",
            "generic",
            True,
            id="chain_broken>truncation",
        ),
        pytest.param(
            "openai responses stream closed before terminal event: status 401",
            "timeout",
            True,
            id="truncation>auth",
        ),
        pytest.param("status 529: rate limit", "overloaded", True, id="overloaded>rate_limit"),
        pytest.param("overloaded: invalid api key", "overloaded", True, id="overloaded>auth"),
        pytest.param("quota exceeded: unauthorized", "usage_limit", False, id="usage>auth"),
        pytest.param("status 429: quota exceeded", "rate_limit", True, id="429 quota>usage"),
        pytest.param("status 429: insufficient_quota", "usage_limit", False, id="insufficient>429"),
        pytest.param("authentication failed: invalid model", "auth", False, id="auth>config"),
        pytest.param("status 401: invalid model", "auth", False, id="401>config"),
        pytest.param("forbidden: context length exceeded", "config", False, id="config>forbidden"),
        pytest.param("status 403: model not found", "config", False, id="config>403"),
        pytest.param("forbidden: rate limit", "auth", False, id="forbidden>rate_limit"),
        pytest.param("status 429: invalid model", "config", False, id="config>429"),
        pytest.param("rate limit: provider_disabled", "rate_limit", True, id="rate_limit>disabled"),
        pytest.param("too many requests: service unavailable", "rate_limit", True, id="rl>timeout"),
        pytest.param("status 503: provider_disabled", "provider_disabled", False, id="dis>503"),
        pytest.param("status 503: invalid model", "config", False, id="config>503"),
        pytest.param("503 invalid model", "config", False, id="config>bare 503"),
        pytest.param("service unavailable: model not found", "config", False, id="config>text"),
        pytest.param("connection refused: unsupported model", "config", False, id="config>refused"),
        pytest.param(
            "context deadline exceeded: invalid model", "config", False, id="config>deadline"
        ),
        pytest.param("timeout: internal server error", "timeout", True, id="timeout>server error"),
        pytest.param("status 500: context deadline exceeded", "timeout", False, id="deadline>500"),
        pytest.param("model not found: server error", "config", False, id="config>server error"),
        pytest.param("status 401 upstream: context canceled", "auth", False, id="auth>canceled"),
        pytest.param(
            "insufficient_quota: context canceled", "usage_limit", False, id="usage>canceled"
        ),
        pytest.param("unexpected eof: context canceled", "timeout", True, id="timeout>canceled"),
        pytest.param("status 500: request canceled", "generic", True, id="500>canceled"),
    ],
)
def test_rule_order_decides_between_two_matching_rules(
    text: str, kind: str, retryable: bool
) -> None:
    classified = classify(Exception(text))
    assert (classified.kind, classified.retryable) == (kind, retryable)


def test_cancellation_is_checked_last_but_still_names_the_cancel() -> None:
    classified = classify(Exception("status 418: request canceled"))
    assert (classified.kind, classified.message, classified.status_code) == (
        "generic",
        CANCELED,
        418,
    )


# ── the special cases ahead of the signal table ──────────────────────────────


def test_interrupted_text_reads_as_a_cancel_and_keeps_the_status() -> None:
    classified = classify(Exception("openai: status 429: request interrupted"))
    assert classified == ClassifiedError(
        kind="generic", message=CANCELED, provider="openai", status_code=429
    )


@pytest.mark.parametrize(
    ("text", "diagnostic"),
    [
        (
            "No tool output found for function call call_abc123.",
            "OpenAI Responses API request continuity diagnostic: "
            "match=function_call_output_missing.",
        ),
        (
            "Item 'ws_1' of type 'web_search_call' was provided without its required "
            "'reasoning' item: 'rs_2'.",
            "OpenAI Responses API request continuity diagnostic: "
            "match=web_search_reasoning_missing.",
        ),
    ],
)
def test_continuity_diagnostic_replaces_detail_without_provider_ids(
    text: str, diagnostic: str
) -> None:
    classified = classify(FakeProviderError(text, status_code=400, message=text))
    assert classified == ClassifiedError(
        kind="generic", message=CONTINUITY, detail=diagnostic, status_code=400
    )
    assert "call_abc123" not in classified.detail and "rs_2" not in classified.detail


def test_continuity_diagnostic_matches_in_the_provider_detail_alone() -> None:
    error = FakeProviderError(
        "Error code: 400",
        status_code=400,
        body={"error": {"message": "No tool output found for function call call_1."}},
    )
    assert classify(error).message == CONTINUITY


@pytest.mark.parametrize(
    "text",
    [
        "Previous response with id 'resp_123' not found.",
        "status 404: previous_response_id resp_1 NOT FOUND",
        "PREVIOUS RESPONSE Not Found",
    ],
)
def test_chain_broken_is_retryable_and_flagged(text: str) -> None:
    classified = classify(Exception(text))
    assert (classified.kind, classified.retryable, classified.chain_broken) == (
        "generic",
        True,
        True,
    )
    assert classified.message == CHAIN_BROKEN
    assert classified.provider == "openai"


def test_chain_broken_matches_in_the_provider_detail_and_beats_its_404() -> None:
    error = FakeProviderError(
        "Error code: 404",
        status_code=404,
        body={"error": {"message": "Previous response with id 'resp_9' not found."}},
    )
    classified = classify(error, provider="azure")
    assert (classified.chain_broken, classified.retryable, classified.status_code) == (
        True,
        True,
        404,
    )
    assert classified.provider == "azure"


@pytest.mark.parametrize(
    "text",
    ["previous response id resp_1 expired", "model not found", "response not found"],
)
def test_chain_broken_needs_both_a_previous_response_and_not_found(text: str) -> None:
    assert classify(Exception(text)).chain_broken is False


@pytest.mark.parametrize(
    ("text", "provider", "message"),
    [
        (
            "anthropic stream closed before message_stop",
            "anthropic",
            "Anthropic stream closed unexpectedly before the response completed.",
        ),
        (
            "openai responses stream closed before terminal event: unexpected EOF",
            "openai",
            "OpenAI stream closed unexpectedly before the response completed.",
        ),
        (
            "openrouter: anthropic stream closed before message_stop",
            "openrouter",
            "OpenRouter stream closed unexpectedly before the response completed.",
        ),
    ],
)
def test_stream_truncation_is_a_retryable_timeout_naming_the_provider(
    text: str, provider: str, message: str
) -> None:
    classified = classify(Exception(text))
    assert classified == ClassifiedError(
        kind="timeout", message=message, provider=provider, retryable=True
    )


# ── deadlines, cancellation and transport resets ─────────────────────────────


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(TimeoutError(), id="TimeoutError"),
        pytest.param(chained(RuntimeError("step failed"), TimeoutError()), id="chained"),
        pytest.param(during(RuntimeError("step failed"), TimeoutError()), id="context"),
        pytest.param(Exception("context deadline exceeded"), id="text"),
    ],
)
def test_deadline_is_a_timeout_that_is_not_retried(error: BaseException) -> None:
    classified = classify(error)
    assert classified == ClassifiedError(
        kind="timeout", message="The request timed out before it completed."
    )


async def test_asyncio_timeout_scope_classifies_as_a_deadline() -> None:
    try:
        async with asyncio.timeout(0):
            await asyncio.sleep(1)
    except TimeoutError as error:
        classified = classify(error)
    assert (classified.kind, classified.retryable) == ("timeout", False)


def test_typed_deadline_gives_way_to_a_config_signal() -> None:
    classified = classify(chained(RuntimeError("invalid model"), TimeoutError()))
    assert classified.kind == "config"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(asyncio.CancelledError(), id="CancelledError"),
        pytest.param(chained(RuntimeError("step failed"), asyncio.CancelledError()), id="chain"),
        pytest.param(Exception("operation failed: context canceled"), id="go text"),
        pytest.param(Exception("Request was cancelled"), id="british"),
    ],
)
def test_cancellation_is_generic_and_not_retried(error: BaseException) -> None:
    assert classify(error) == ClassifiedError(kind="generic", message=CANCELED)


def test_typed_cancellation_under_an_auth_failure_stays_auth() -> None:
    error = chained(
        FakeProviderError("upstream rejected", status_code=401), asyncio.CancelledError()
    )
    assert (classify(error).kind, classify(error).status_code) == ("auth", 401)


def test_provider_transport_reset_is_a_retryable_timeout() -> None:
    error = chained(ProviderTransportReset("provider transport reset"), asyncio.CancelledError())
    assert classify(error) == ClassifiedError(
        kind="timeout", message="The AI provider is temporarily unavailable.", retryable=True
    )


def test_provider_transport_reset_with_a_status_is_judged_by_the_status() -> None:
    error = chained(ProviderTransportReset("reset"), FakeProviderError(status_code=400))
    classified = classify(error)
    assert (classified.kind, classified.retryable, classified.status_code) == (
        "generic",
        False,
        400,
    )


# ── transport errors, provider names and status codes in text ────────────────


@pytest.mark.parametrize(
    "text",
    [
        "http2: client connection force closed via ClientConn.Close",
        "http2: Transport received Server's graceful shutdown GOAWAY",
        "http2: server sent GOAWAY and closed the connection",
        "http2: stream closed",
        'Post "https://example.com/v1/messages": use of closed network connection',
        "http2: client conn is closed",
        "http2: client conn not usable",
        "http2: client conn could not be established",
        "http2: client connection lost",
    ],
)
def test_http2_transport_failures_are_retryable_timeouts(text: str) -> None:
    assert classify(Exception(text)) == ClassifiedError(
        kind="timeout", message="The AI provider is temporarily unavailable.", retryable=True
    )


@pytest.mark.parametrize(
    ("text", "provider", "message"),
    [
        (
            'stream response: Post "https://api.anthropic.com/v1/messages": '
            "http2: client connection force closed via ClientConn.Close",
            "anthropic",
            "Anthropic is temporarily unavailable.",
        ),
        (
            'stream response: Post "https://api.openai.com/v1/chat/completions": '
            "http2: client connection force closed via ClientConn.Close",
            "openai",
            "OpenAI is temporarily unavailable.",
        ),
        (
            'stream response: Post "https://generativelanguage.googleapis.com/v1beta/models/'
            'gemini-pro:streamGenerateContent": '
            "http2: server sent GOAWAY and closed the connection",
            "google",
            "Google is temporarily unavailable.",
        ),
    ],
)
def test_transport_failure_names_the_provider_found_in_the_url(
    text: str, provider: str, message: str
) -> None:
    classified = classify(Exception(text))
    assert (classified.provider, classified.message) == (provider, message)


@pytest.mark.parametrize(
    ("text", "provider"),
    [
        ("openai-compat endpoint failed", "openai-compat"),
        ("openai compatible endpoint failed", "openai-compat"),
        ("azure openai deployment failed", "azure"),
        ("azure-openai deployment failed", "azure"),
        ("openrouter: anthropic/claude-3 failed", "openrouter"),
        ("aws bedrock: claude failed", "bedrock"),
        ("bedrock-runtime failed", "bedrock"),
        ("vercel ai gateway: openai failed", "vercel"),
        ("vercel failed", "vercel"),
        ("anthropic failed", "anthropic"),
        ("claude failed", "anthropic"),
        ("google failed", "google"),
        ("gemini failed", "google"),
        ("vertex failed", "google"),
        ("openai failed", "openai"),
        ("mistral failed", ""),
    ],
)
def test_provider_is_read_from_text_first_hint_wins(text: str, provider: str) -> None:
    assert classify(Exception(text)).provider == provider


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("received status 429 from upstream", 429),
        ("status code: 503", 503),
        ("Status Code=502", 502),
        ("HTTP 504 from gateway", 504),
        ("http:500", 500),
        ("status 404 not here", 404),
        ("upstream said 401", 401),
        ("error 404 page", 0),
        ("dial tcp 10.0.0.1:503: connection refused", 0),
        ("dial tcp 10.0.0.1:503: then 429 too many requests", 429),
        ("stream ID 429; INTERNAL_ERROR; received from peer", 0),
        ("stream id: 503 reset, later 401 unauthorized", 401),
        ("status 418 but also 503", 418),
        ("http2: server error 429 Too Many Requests", 429),
        ("id 15030 is not a status", 0),
    ],
)
def test_status_code_is_read_from_text(text: str, status: int) -> None:
    assert classify(Exception(text)).status_code == status


@pytest.mark.parametrize(
    ("text", "kind", "retryable", "status"),
    [
        ("http2: server error 429 Too Many Requests", "rate_limit", True, 429),
        ("http2: 401 unauthorized", "auth", False, 401),
        ("http2: client conn is closed: status 429 Too Many Requests", "rate_limit", True, 429),
        ("http2: server sent GOAWAY: status 401 unauthorized", "auth", False, 401),
    ],
)
def test_status_code_beats_http2_transport_text(
    text: str, kind: str, retryable: bool, status: int
) -> None:
    classified = classify(Exception(text))
    assert (classified.kind, classified.retryable, classified.status_code) == (
        kind,
        retryable,
        status,
    )


def test_host_port_is_not_mistaken_for_a_status() -> None:
    classified = classify(Exception("dial tcp 10.0.0.1:503: connection refused"))
    assert (classified.kind, classified.retryable, classified.status_code) == (
        "timeout",
        True,
        0,
    )


def test_generic_fallback_keeps_status_and_detail() -> None:
    error = FakeProviderError("teapot", status_code=418, body={"message": "I'm a teapot"})
    assert classify(error) == ClassifiedError(
        kind="generic",
        message="The AI provider returned an unexpected error.",
        detail="I'm a teapot",
        status_code=418,
    )


def test_unrecognised_error_without_status_fails_unexpectedly() -> None:
    assert classify(ValueError("bad thing")) == ClassifiedError(
        kind="generic", message="The chat request failed unexpectedly."
    )


@pytest.mark.parametrize(
    "error", [None, Exception(""), Exception("   \n"), RuntimeError()], ids=repr
)
def test_nothing_to_say_is_the_empty_classification(error: BaseException | None) -> None:
    classified = classify(error)
    assert classified == ClassifiedError()
    assert classified.is_empty


def test_wrapped_error_text_is_read_through_the_cause_chain() -> None:
    connect = ConnectionRefusedError("[Errno 111] Connection refused")
    classified = classify(chained(RuntimeError("Connection error."), connect))
    assert (classified.kind, classified.retryable) == ("timeout", True)


def test_suppressed_context_is_not_read() -> None:
    hidden = during(RuntimeError("step failed"), Exception("invalid api key"))
    hidden.__suppress_context__ = True
    assert classify(hidden).kind == "generic"
    assert classify(during(RuntimeError("step failed"), Exception("invalid api key"))).kind == (
        "auth"
    )


# ── structured provider details ──────────────────────────────────────────────


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(FakeProviderError("status 503", status_code=401), 401, id="status_code"),
        pytest.param(FakeProviderError("failed", code=429), 429, id="code"),
        pytest.param(FakeProviderError("failed", response_status=529), 529, id="response"),
        pytest.param(
            chained(RuntimeError("step failed"), FakeProviderError("x", status_code=429)),
            429,
            id="in cause",
        ),
        pytest.param(FakeProviderError("failed", code=1), 0, id="code out of range"),
        pytest.param(FakeProviderError("failed", code="rate_limit_exceeded"), 0, id="code str"),
        pytest.param(FakeProviderError("failed", status_code=True), 0, id="bool"),
        pytest.param(FakeProviderError("upstream 503", status_code=0), 503, id="zero→text"),
    ],
)
def test_structured_status_comes_first(error: BaseException, status: int) -> None:
    assert classify(error).status_code == status


def test_structured_status_alone_classifies_an_error_without_text() -> None:
    classified = classify(FakeProviderError("", status_code=429, headers={"Retry-After": "30"}))
    assert classified == ClassifiedError(
        kind="rate_limit",
        message="The AI provider is rate limiting requests.",
        retryable=True,
        status_code=429,
        retry_after=30.0,
    )


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "30", "ReTrY-AfTeR-Ms": "1500"}, 1.5),
        ({"retry-after-ms": "nope", "retry-after": "2"}, 2.0),
        ({"Retry-After": "definitely not a delay"}, 0.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "inf"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({}, 0.0),
    ],
)
def test_retry_after_from_response_headers(headers: dict[str, str], retry_after: float) -> None:
    error = FakeProviderError("upstream failed", status_code=429, headers=headers)
    assert classify(error).retry_after == retry_after


def test_retry_after_http_date_counts_down_from_now() -> None:
    retry_at = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    error = FakeProviderError("upstream failed", status_code=429, headers={"Retry-After": retry_at})
    assert 25.0 <= classify(error).retry_after <= 30.0


def test_retry_after_http_date_without_zone_is_read_as_utc() -> None:
    in_30s = datetime.now(UTC) + timedelta(seconds=30)
    retry_at = format_datetime(in_30s, usegmt=True).replace("GMT", "-0000")
    error = FakeProviderError("upstream failed", status_code=429, headers={"Retry-After": retry_at})
    assert 25.0 <= classify(error).retry_after <= 30.0


@pytest.mark.parametrize(("value", "retry_after"), [(12, 12.0), (0.25, 0.25), (-3, 0.0)])
def test_retry_after_attribute(value: float, retry_after: float) -> None:
    error = FakeProviderError("slow down", status_code=429, retry_after=value)
    assert classify(error).retry_after == retry_after


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        pytest.param(
            FakeProviderError("x", body={"error": {"message": " nested ", "type": "e"}}),
            "nested",
            id="nested",
        ),
        pytest.param(FakeProviderError("x", body={"message": "top"}), "top", id="top-level"),
        pytest.param(
            FakeProviderError("x", body={"error": {"message": "inner"}, "message": "outer"}),
            "inner",
            id="nested first",
        ),
        pytest.param(
            FakeProviderError("x", body='{"error": {"message": "from json"}}'),
            "from json",
            id="json text",
        ),
        pytest.param(
            FakeProviderError("x", body=b'{"message": "from bytes"}'), "from bytes", id="bytes"
        ),
        pytest.param(
            FakeProviderError("x", body="<html>oops</html>", message="sdk message"),
            "sdk message",
            id="non-json body→message",
        ),
        pytest.param(FakeProviderError("x", message="  just message "), "just message", id="msg"),
        pytest.param(FakeProviderError("x", body=["no", "message"]), "", id="list body"),
        pytest.param(FakeProviderError("x", body={"error": "flat", "code": 1}), "", id="no msg"),
        pytest.param(Exception("no structured detail"), "", id="plain"),
    ],
)
def test_detail_comes_from_body_then_message(error: BaseException, detail: str) -> None:
    assert classify(error).detail == detail


@pytest.mark.parametrize(
    ("status", "body_message", "kind"),
    [
        (400, "You exceeded your current quota, please check your plan.", "usage_limit"),
        (429, "You exceeded your current quota, please check your plan.", "rate_limit"),
        (429, "insufficient_quota", "usage_limit"),
        (402, "Your billing details are missing.", "usage_limit"),
    ],
)
def test_usage_limit_is_read_from_the_provider_detail(
    status: int, body_message: str, kind: str
) -> None:
    error = FakeProviderError(
        f"Error code: {status}", status_code=status, body={"message": body_message}
    )
    assert classify(error).kind == kind


# ── provider hints ───────────────────────────────────────────────────────────


def test_provider_hint_names_the_provider_in_the_message() -> None:
    classified = classify(Exception("received status 429 from upstream"), provider="anthropic")
    assert (classified.provider, classified.message) == (
        "anthropic",
        "Anthropic is rate limiting requests.",
    )


def test_provider_hint_beats_provider_text_and_is_normalised() -> None:
    classified = classify(Exception("openai: status 503"), provider=" Azure OpenAI ")
    assert (classified.provider, classified.message) == (
        "azure",
        "Azure OpenAI is temporarily unavailable.",
    )


def test_empty_classification_stays_empty_with_a_hint() -> None:
    assert classify(Exception(""), provider="openai") == ClassifiedError()


# ── with_classification ──────────────────────────────────────────────────────


def test_with_classification_wraps_without_changing_the_text() -> None:
    original = ValueError("invalid api key")
    wrapped = with_classification(original, ClassifiedError(kind=" rate_limit ", retryable=True))
    assert isinstance(wrapped, ClassifiedException)
    assert str(wrapped) == "invalid api key"
    assert wrapped.__cause__ is original
    assert wrapped.classified == ClassifiedError(
        kind="rate_limit", message="The AI provider is rate limiting requests.", retryable=True
    )


def test_pre_classification_beats_every_pattern() -> None:
    stored = ClassifiedError(kind="startup_timeout", provider="openai", retryable=True)
    wrapped = with_classification(Exception("status 401 context canceled"), stored)
    assert classify(wrapped) == ClassifiedError(
        kind="startup_timeout",
        message="OpenAI did not start responding in time.",
        provider="openai",
        retryable=True,
    )


@pytest.mark.parametrize("link", [chained, during], ids=["cause", "context"])
def test_pre_classification_is_found_anywhere_in_the_chain(
    link: Callable[[BaseException, BaseException], BaseException],
) -> None:
    stored = ClassifiedError(kind="missing_key")
    inner = with_classification(Exception("key 7 gone"), stored)
    outer = link(RuntimeError("status 503 unavailable"), inner)
    assert classify(outer).kind == "missing_key"


def test_re_wrapping_replaces_the_classification_without_nesting() -> None:
    original = Exception("boom")
    first = with_classification(original, ClassifiedError(kind="auth"))
    second = with_classification(first, ClassifiedError(kind="config"))
    assert classify(second).kind == "config"
    assert second.__cause__ is original
    assert str(second) == "boom"


def test_provider_hint_relabels_a_pre_classification() -> None:
    wrapped = with_classification(Exception("x"), ClassifiedError(kind="overloaded"))
    classified = classify(wrapped, provider="bedrock")
    assert (classified.provider, classified.message) == (
        "bedrock",
        "AWS Bedrock is temporarily overloaded.",
    )


def test_pre_classification_round_trips_through_raise() -> None:
    stored = ClassifiedError(kind="content_filter", provider="google", detail="sexual")
    with pytest.raises(ClassifiedException) as caught:
        raise with_classification(Exception("blocked"), stored)
    assert classify(caught.value) == stored.normalized()


# ── normalisation ────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("raw", "provider"),
    [
        ("Azure OpenAI", "azure"),
        ("azure-openai", "azure"),
        (" AZURE OPENAI ", "azure"),
        ("openai compat", "openai-compat"),
        ("openai compatible", "openai-compat"),
        ("openai_compat", "openai-compat"),
        ("  OpenAI ", "openai"),
        ("Mistral", "mistral"),
    ],
)
def test_normalized_provider(raw: str, provider: str) -> None:
    assert ClassifiedError(kind="auth", provider=raw).normalized().provider == provider


def test_normalized_trims_and_clamps() -> None:
    raw = ClassifiedError(
        kind="  timeout ",
        message="  custom words  ",
        detail="\n detail \t",
        retryable=True,
        retry_after=-4.0,
    )
    assert raw.normalized() == ClassifiedError(
        kind="timeout", message="custom words", detail="detail", retryable=True
    )


@pytest.mark.parametrize(
    "raw",
    [
        ClassifiedError(),
        ClassifiedError(kind="  ", message=" ", detail=" ", retry_after=-1.0),
        ClassifiedError(retryable=True, provider="openai", chain_broken=True),
        # A bare generic kind says no more than no kind at all.
        ClassifiedError(kind="generic", provider="openrouter", retryable=True),
    ],
)
def test_normalized_keeps_an_empty_classification_empty(raw: ClassifiedError) -> None:
    assert raw.is_empty
    assert raw.normalized() == ClassifiedError()


@pytest.mark.parametrize(
    "raw",
    [
        ClassifiedError(detail="upstream said no"),
        ClassifiedError(status_code=418),
        ClassifiedError(retry_after=2.0),
        ClassifiedError(message="Something specific happened."),
    ],
)
def test_normalized_fills_in_generic_kind(raw: ClassifiedError) -> None:
    assert not raw.is_empty
    normalized = raw.normalized()
    assert normalized.kind == "generic"
    assert normalized.message


def test_normalized_fills_the_terminal_message() -> None:
    normalized = ClassifiedError(kind="config", provider="anthropic").normalized()
    assert normalized.message == (
        "Anthropic rejected the model configuration. "
        "Check the selected model and provider settings."
    )


def test_kind_is_always_an_error_kind_and_serialises_as_its_value() -> None:
    classified = ClassifiedError(kind="auth", message="No.")
    assert classified.kind is ErrorKind.AUTH
    assert classified.normalized().kind is ErrorKind.AUTH
    assert dataclasses.replace(classified, kind="config").kind is ErrorKind.CONFIG
    payload = classified.to_dict()
    assert type(payload["kind"]) is str and payload["kind"] == "auth"
    assert json.loads(json.dumps({"kind": classified.kind})) == {"kind": "auth"}


@pytest.mark.parametrize("raw", ["", "  ", ErrorKind.GENERIC])
def test_an_empty_kind_is_generic(raw: str) -> None:
    assert ClassifiedError(kind=raw).kind is ErrorKind.GENERIC
    assert ClassifiedError().kind is ErrorKind.GENERIC


def test_a_kinds_string_is_trimmed() -> None:
    assert ClassifiedError(kind=" rate_limit ").kind is ErrorKind.RATE_LIMIT


@pytest.mark.parametrize("raw", ["no_such_kind", "Auth", "rate limit"])
def test_an_unknown_kind_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match=f"unknown error kind {raw!r}; known kinds: overloaded"):
        ClassifiedError(kind=raw)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("x" * 499, "x" * 499),
        ("x" * 500, "x" * 500),
        ("x" * 501, "x" * 499 + "…"),
        ("é" * 2000, "é" * 499 + "…"),
        ("  " + "y" * 500 + "  ", "y" * 500),
    ],
    ids=["499", "500", "501", "code points", "trimmed first"],
)
def test_detail_is_capped_at_500_characters(detail: str, expected: str) -> None:
    capped = ClassifiedError(kind="generic", detail=detail).normalized().detail
    assert capped == expected
    assert len(capped) <= 500


def test_classify_caps_a_long_provider_detail() -> None:
    error = FakeProviderError("boom", status_code=500, body={"message": "z" * 5000})
    assert classify(error).detail == "z" * 499 + "…"


def test_to_dict_is_json_ready() -> None:
    classified = classify(
        FakeProviderError("slow", status_code=429, headers={"retry-after": "3"}), provider="openai"
    )
    payload = classified.to_dict()
    assert payload == {
        "kind": "rate_limit",
        "message": "OpenAI is rate limiting requests.",
        "detail": "",
        "provider": "openai",
        "retryable": True,
        "status_code": 429,
        "retry_after": 3.0,
        "chain_broken": False,
    }
    assert json.loads(json.dumps(payload)) == payload


# ── with_provider ────────────────────────────────────────────────────────────


def test_with_provider_empty_hint_returns_the_normalized_copy() -> None:
    raw = ClassifiedError(kind=" auth ", provider="Azure OpenAI", message=" kept ")
    assert raw.with_provider("  ") == raw.normalized()


def test_with_provider_same_provider_keeps_the_message() -> None:
    raw = ClassifiedError(kind="timeout", provider="anthropic", message="Custom words.")
    assert raw.with_provider("Anthropic").message == "Custom words."


def test_with_provider_same_provider_without_message_derives_one() -> None:
    raw = ClassifiedError(kind="timeout", provider="anthropic", retryable=True)
    assert raw.with_provider("anthropic").message == "Anthropic is temporarily unavailable."


def test_with_provider_re_derives_a_generic_message_instead_of_emptying_it() -> None:
    classified = classify(ValueError("bad thing"))
    assert classified.with_provider("openai") == ClassifiedError(
        kind="generic", message="The chat request failed unexpectedly.", provider="openai"
    )


def test_classify_never_returns_a_bare_generic_as_empty() -> None:
    classified = classify(Exception("internal server error"))
    assert (classified.kind, classified.retryable) == (ErrorKind.GENERIC, True)
    assert classified.message == "The AI provider returned an unexpected error."


def test_with_provider_new_provider_re_derives_the_message() -> None:
    classified = classify(Exception("openai received status 429 from upstream"))
    assert classified.provider == "openai"
    assert classified.with_provider("azure openai") == ClassifiedError(
        kind="rate_limit",
        message="Azure OpenAI is rate limiting requests.",
        provider="azure",
        retryable=True,
        status_code=429,
    )


def test_with_provider_adds_a_provider_when_unknown_and_keeps_retry_after() -> None:
    classified = classify(FakeProviderError("", status_code=429, headers={"Retry-After": "30"}))
    assert classified.provider == ""
    assert classified.with_provider("openai") == ClassifiedError(
        kind="rate_limit",
        message="OpenAI is rate limiting requests.",
        provider="openai",
        retryable=True,
        status_code=429,
        retry_after=30.0,
    )


# ── messages ─────────────────────────────────────────────────────────────────

TERMINAL_CASES = [
    ("overloaded", "anthropic", True, 0, "Anthropic is temporarily overloaded."),
    ("overloaded", "", True, 529, "The AI provider is temporarily overloaded."),
    ("rate_limit", "openai", True, 429, "OpenAI is rate limiting requests."),
    ("rate_limit", "", True, 0, "The AI provider is rate limiting requests."),
    ("timeout", "anthropic", True, 0, "Anthropic is temporarily unavailable."),
    ("timeout", "", True, 0, "The AI provider is temporarily unavailable."),
    ("timeout", "", False, 0, "The request timed out before it completed."),
    ("timeout", "openai", False, 0, "The request timed out before it completed."),
    ("timeout", "openai", False, 504, "OpenAI is temporarily unavailable."),
    ("startup_timeout", "anthropic", True, 0, "Anthropic did not start responding in time."),
    ("startup_timeout", "", True, 0, "The AI provider did not start responding in time."),
    ("stream_silence_timeout", "openai", True, 0, "OpenAI did not send response data in time."),
    (
        "stream_silence_timeout",
        "",
        True,
        0,
        "The AI provider did not send response data in time.",
    ),
    (
        "usage_limit",
        "openai",
        False,
        0,
        "The usage quota for OpenAI has been exceeded. "
        "Check the billing and quota settings for the provider account.",
    ),
    (
        "usage_limit",
        "",
        False,
        0,
        "The usage quota for the AI provider has been exceeded. "
        "Check the billing and quota settings for the provider account.",
    ),
    (
        "auth",
        "google",
        False,
        401,
        "Authentication with Google failed. Check the API key and permissions.",
    ),
    (
        "auth",
        "",
        False,
        0,
        "Authentication with the AI provider failed. Check the API key and permissions.",
    ),
    (
        "config",
        "bedrock",
        False,
        0,
        "AWS Bedrock rejected the model configuration. "
        "Check the selected model and provider settings.",
    ),
    (
        "config",
        "",
        False,
        0,
        "The AI provider rejected the model configuration. "
        "Check the selected model and provider settings.",
    ),
    (
        "missing_key",
        "",
        False,
        0,
        "This conversation was started with an API key that is no longer available. "
        "Send your message again to continue.",
    ),
    (
        "missing_key",
        "openai",
        False,
        0,
        "This conversation was started with an API key that is no longer available. "
        "Send your message again to continue.",
    ),
    (
        "provider_disabled",
        "vercel",
        False,
        503,
        "The Vercel AI Gateway provider has been disabled. Contact your Coder administrator.",
    ),
    (
        "provider_disabled",
        "",
        False,
        503,
        "The AI provider has been disabled. Contact your Coder administrator.",
    ),
    (
        "content_filter",
        "azure",
        False,
        0,
        "Azure OpenAI blocked this response under its content policy.",
    ),
    (
        "content_filter",
        "",
        False,
        0,
        "The AI provider blocked this response under its content policy.",
    ),
    ("generic", "", False, 0, "The chat request failed unexpectedly."),
    ("generic", "openrouter", False, 0, "The chat request failed unexpectedly."),
    ("generic", "openrouter", True, 0, "OpenRouter returned an unexpected error."),
    ("generic", "", False, 418, "The AI provider returned an unexpected error."),
    ("requires_action_timeout", "", False, 0, "The chat request failed unexpectedly."),
    (
        "internal",
        "",
        False,
        0,
        "The turn failed inside chatd; the server log has the details. "
        "Send your message again to retry.",
    ),
]


@pytest.mark.parametrize(("kind", "provider", "retryable", "status", "expected"), TERMINAL_CASES)
def test_terminal_message(
    kind: str, provider: str, retryable: bool, status: int, expected: str
) -> None:
    classified = ClassifiedError(
        kind=kind, provider=provider, retryable=retryable, status_code=status
    )
    assert terminal_message(classified) == expected
    # With a detail even a bare generic kind says something, so the message is filled in.
    assert dataclasses.replace(classified, detail="d").normalized().message == expected


RETRY_CASES = [
    ("overloaded", "anthropic", False, "Anthropic is temporarily overloaded."),
    ("rate_limit", "", False, "The AI provider is rate limiting requests."),
    ("timeout", "", False, "The AI provider is temporarily unavailable."),
    ("timeout", "openai", False, "OpenAI is temporarily unavailable."),
    ("startup_timeout", "openai", False, "OpenAI did not start responding in time."),
    ("stream_silence_timeout", "", False, "The AI provider did not send response data in time."),
    ("usage_limit", "openai", False, "The usage quota for OpenAI has been exceeded."),
    ("usage_limit", "", False, "The usage quota for the AI provider has been exceeded."),
    ("auth", "", False, "Authentication with the AI provider failed."),
    ("auth", "openai", False, "Authentication with OpenAI failed."),
    ("config", "anthropic", False, "Anthropic rejected the model configuration."),
    ("config", "", False, "The AI provider rejected the model configuration."),
    ("missing_key", "", False, "The API key for this conversation is no longer available."),
    ("internal", "", False, "The turn failed inside chatd."),
    (
        "provider_disabled",
        "openai",
        False,
        "The OpenAI provider has been disabled by an administrator.",
    ),
    ("provider_disabled", "", False, "The AI provider has been disabled by an administrator."),
    ("content_filter", "google", False, "Google blocked this response under its content policy."),
    ("generic", "", False, "The AI provider returned an unexpected error."),
    ("generic", "openai", True, "OpenAI returned an unexpected error."),
]


@pytest.mark.parametrize(("kind", "provider", "retryable", "expected"), RETRY_CASES)
def test_retry_message_drops_remediation_advice(
    kind: str, provider: str, retryable: bool, expected: str
) -> None:
    classified = ClassifiedError(kind=kind, provider=provider, retryable=retryable)
    assert retry_message(classified) == expected


def test_retry_message_reuses_a_retryable_classifications_message() -> None:
    classified = classify(Exception("anthropic stream closed before message_stop"))
    assert retry_message(classified) == (
        "Anthropic stream closed unexpectedly before the response completed."
    )


def test_retry_message_ignores_a_non_retryable_classifications_message() -> None:
    classified = classify(Exception("openai: invalid api key"))
    assert classified.message.endswith("Check the API key and permissions.")
    assert retry_message(classified) == "Authentication with OpenAI failed."


@pytest.mark.parametrize("kind", [kind.value for kind in ErrorKind])
def test_status_codes_never_appear_in_messages(kind: str) -> None:
    for retryable in (True, False):
        classified = ClassifiedError(kind=kind, retryable=retryable, status_code=503)
        assert "503" not in terminal_message(classified)
        assert "503" not in retry_message(classified)


@pytest.mark.parametrize(
    ("provider", "name"),
    [
        ("anthropic", "Anthropic"),
        ("azure", "Azure OpenAI"),
        ("Azure OpenAI", "Azure OpenAI"),
        ("bedrock", "AWS Bedrock"),
        ("google", "Google"),
        ("openai", "OpenAI"),
        ("openai-compat", "OpenAI Compatible"),
        ("openai_compat", "OpenAI Compatible"),
        ("openrouter", "OpenRouter"),
        ("vercel", "Vercel AI Gateway"),
        (" OPENAI ", "OpenAI"),
        ("mistral", "the AI provider"),
        ("", "the AI provider"),
    ],
)
def test_display_name(provider: str, name: str) -> None:
    assert display_name(provider) == name


# ── upstream chatretry TestIsRetryable, over classify(...).retryable ─────────


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        pytest.param(Exception("model is overloaded, please try again"), True, id="Overloaded"),
        pytest.param(Exception("rate limit exceeded"), True, id="RateLimit"),
        pytest.param(Exception("rate_limit: too many requests"), True, id="RateLimitUnderscore"),
        pytest.param(Exception("too many requests"), True, id="TooManyRequests"),
        # Legacy upstream expected False here; the newest rules read the 429 itself.
        pytest.param(Exception("received status 429 from upstream"), True, id="HTTP429InMessage"),
        pytest.param(Exception("received status 529 from upstream"), True, id="HTTP529InMessage"),
        pytest.param(Exception("status 500: internal server error"), True, id="ServerError500"),
        pytest.param(Exception("server error"), True, id="ServerErrorGeneric"),
        pytest.param(Exception("read tcp: connection reset by peer"), True, id="ConnectionReset"),
        pytest.param(Exception("dial tcp: connection refused"), True, id="ConnectionRefused"),
        pytest.param(Exception("unexpected EOF"), True, id="EOF"),
        pytest.param(Exception("write: broken pipe"), True, id="BrokenPipe"),
        pytest.param(Exception("i/o timeout"), True, id="NetworkTimeout"),
        pytest.param(Exception("service unavailable"), True, id="ServiceUnavailable"),
        pytest.param(Exception("the service is currently unavailable"), True, id="Unavailable"),
        pytest.param(Exception("status 502: bad gateway"), True, id="Status502"),
        pytest.param(Exception("status 503"), True, id="Status503"),
        pytest.param(None, False, id="Nil"),
        pytest.param(asyncio.CancelledError(), False, id="ContextCanceled"),
        pytest.param(
            chained(RuntimeError("operation failed"), asyncio.CancelledError()),
            False,
            id="ContextCanceledWrapped",
        ),
        pytest.param(Exception("context canceled"), False, id="ContextCanceledMessage"),
        pytest.param(Exception("context deadline exceeded"), False, id="ContextDeadlineExceeded"),
        pytest.param(Exception("authentication failed"), False, id="Authentication"),
        pytest.param(Exception("401 Unauthorized"), False, id="Unauthorized"),
        pytest.param(Exception("403 Forbidden"), False, id="Forbidden"),
        pytest.param(Exception("invalid api key"), False, id="InvalidAPIKey"),
        pytest.param(Exception("invalid_api_key"), False, id="InvalidAPIKeyUnderscore"),
        pytest.param(Exception("invalid model: gpt-5-turbo"), False, id="InvalidModel"),
        pytest.param(Exception("model not found"), False, id="ModelNotFound"),
        pytest.param(Exception("model_not_found"), False, id="ModelNotFoundUnderscore"),
        pytest.param(Exception("context length exceeded"), False, id="ContextLengthExceeded"),
        pytest.param(Exception("context_exceeded"), False, id="ContextExceededUnderscore"),
        pytest.param(Exception("maximum context length"), False, id="MaximumContextLength"),
        pytest.param(Exception("quota exceeded"), False, id="QuotaExceeded"),
        pytest.param(Exception("billing issue: payment required"), False, id="BillingError"),
        pytest.param(
            chained(RuntimeError("provider call failed"), Exception("service unavailable")),
            True,
            id="WrappedRetryable",
        ),
        pytest.param(
            chained(RuntimeError("provider call failed"), Exception("invalid api key")),
            False,
            id="WrappedNonRetryable",
        ),
    ],
)
def test_is_retryable(error: BaseException | None, retryable: bool) -> None:
    assert classify(error).retryable is retryable


@pytest.mark.parametrize(
    ("text", "kind", "status"),
    [
        ("status 401 from provider: context canceled", "auth", 401),
        ("insufficient_quota from provider: context canceled", "usage_limit", 0),
    ],
)
def test_canceled_non_retryable_is_not_a_transport_reset(text: str, kind: str, status: int) -> None:
    classified = classify(Exception(text))
    assert (classified.kind, classified.retryable, classified.status_code) == (kind, False, status)
