"""chatd's one error vocabulary: kinds, `ClassifiedError`, `classify()` and the messages.

Every failure a user can see (a run that ends, a retry countdown, a stored last error)
goes through `classify()`, which turns any exception into a `ClassifiedError`: a kind,
one sentence saying what happened and what to do next, the provider's HTTP status and
retry-after when there were any, and the provider's own detail text. This module only
reads exceptions and describes them: it never retries, sleeps, logs or raises, and HTTP
status codes never appear in its sentences (they travel in `status_code`).

The kinds ("P" is the provider's display name, or "the AI provider" when unknown):

| kind                    | retry | typical origin               | what the user is told          |
|-------------------------|-------|------------------------------|--------------------------------|
| overloaded              | yes   | 529, "overloaded"            | P is temporarily overloaded    |
| rate_limit              | yes   | 429, "rate limit"            | P is rate limiting requests    |
| timeout                 | yes*  | 408/50x, dropped connections | P is temporarily unavailable   |
| startup_timeout         | yes   | the loop's startup guard     | P did not start responding     |
| stream_silence_timeout  | yes   | a started stream went silent | P did not send response data   |
| usage_limit             | no    | quota / billing text         | quota exceeded; check billing  |
| auth                    | no    | 401/403, "invalid api key"   | check the API key, permissions |
| config                  | no    | unknown model, context size  | check the model and settings   |
| provider_disabled       | no    | gateway "provider_disabled"  | contact your Coder admin       |
| content_filter          | no    | provider content policy      | P blocked this response        |
| missing_key             | no    | the chat's API key is gone   | send your message again        |
| requires_action_timeout | no    | client tools were not run    | send a message to continue     |
| internal                | no    | chatd itself failed mid-turn | send the message again         |
| generic                 | some* | anything else; cancellation  | P returned an unexpected error |

(*) A timeout from a deadline (`TimeoutError`, "context deadline exceeded") is not
retried and reads "The request timed out before it completed." A generic error is
retryable only for 500 / "server error" and for a broken continuation chain
(`chain_broken`, which the loop retries with the full history).

`ClassifiedError.kind` is always an `ErrorKind`; the constructor also takes a kind's
string (`"auth"`, as stored JSON holds it), `""` meaning generic. The empty
classification (`ClassifiedError()`: generic, with nothing to say) is what
`classify()` returns when an error carries no text or detail at all.

`classify()` weighs its rules in a fixed order (see `_RULES`); a `ClassifiedException`
(from `with_classification()`) anywhere in the chain short-circuits them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable

from chatd import _error_signals as signals

__all__ = [
    "ClassifiedError",
    "ClassifiedException",
    "ErrorKind",
    "ProviderTransportReset",
    "classify",
    "display_name",
    "retry_message",
    "terminal_message",
    "with_classification",
]

# 500 characters: provider detail is shown to users and stored; longer bodies are cut.
MAX_DETAIL_CHARS = 500
_UNKNOWN_SUBJECT = "the AI provider"
_CANCELED_MESSAGE = "The request was canceled before it completed."
_CONTINUITY_MESSAGE = (
    "The chat continuation failed due to an internal state mismatch. "
    "This is not a configuration or billing issue."
)
_CHAIN_BROKEN_MESSAGE = (
    "The chat continuation was lost by the provider; retrying with the full history."
)
_TIMEOUT_STATUSES = frozenset({408, 502, 503, 504})


class ErrorKind(enum.StrEnum):
    """Stable, wire-visible kinds; clients switch on these strings."""

    OVERLOADED = "overloaded"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    STARTUP_TIMEOUT = "startup_timeout"
    STREAM_SILENCE_TIMEOUT = "stream_silence_timeout"
    USAGE_LIMIT = "usage_limit"
    AUTH = "auth"
    CONFIG = "config"
    PROVIDER_DISABLED = "provider_disabled"
    CONTENT_FILTER = "content_filter"
    MISSING_KEY = "missing_key"
    # The client never returned the results of its tools (the store's deadline sweeper).
    REQUIRES_ACTION_TIMEOUT = "requires_action_timeout"
    # chatd itself failed outside the model call (a bug, a hook of an embedding
    # application): the turn ends in error instead of holding the chat running.
    INTERNAL = "internal"
    GENERIC = "generic"


class ProviderTransportReset(Exception):
    """A provider stream torn down while the chat's own scope was still alive.

    Raise it in place of the stream's cancellation so the failure classifies as a
    retryable timeout (when no HTTP status is known), not as the user canceling the chat.
    """


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class ClassifiedError:
    """The user-facing view of a failure; hand on `normalized()` copies."""

    kind: ErrorKind
    message: str
    detail: str
    provider: str
    retryable: bool
    status_code: int
    retry_after: float
    # The provider no longer knows the previous response a chained turn pointed at:
    # the loop must drop chain mode and resend the full history before retrying.
    chain_broken: bool

    def __init__(
        self,
        kind: ErrorKind | str = ErrorKind.GENERIC,
        message: str = "",
        detail: str = "",
        provider: str = "",
        retryable: bool = False,
        status_code: int = 0,
        retry_after: float = 0.0,
        chain_broken: bool = False,
    ) -> None:
        # Written out (not generated) so callers may pass a kind's string while the
        # field stays an `ErrorKind`: a generated `__init__` would take members only.
        init = object.__setattr__  # the dataclass is frozen
        init(self, "kind", _error_kind(kind))
        init(self, "message", message)
        init(self, "detail", detail)
        init(self, "provider", provider)
        init(self, "retryable", retryable)
        init(self, "status_code", status_code)
        init(self, "retry_after", retry_after)
        init(self, "chain_broken", chain_broken)

    @property
    def is_empty(self) -> bool:
        """Nothing to tell anyone: a generic kind and no message, detail, status or retry-after."""
        return self.kind is ErrorKind.GENERIC and not (
            self.message.strip() or self.detail.strip() or self.status_code or self.retry_after > 0
        )

    def normalized(self) -> ClassifiedError:
        """Trimmed, provider id normalised, detail capped, message filled in."""
        if self.is_empty:
            return ClassifiedError()
        return self._filled()

    def _filled(self) -> ClassifiedError:
        """`normalized()` for a classification known to say something, even if generic."""
        cleaned = dataclasses.replace(
            self,
            message=self.message.strip(),
            detail=_cap_detail(self.detail),
            provider=signals.normalize_provider(self.provider),
            retry_after=self.retry_after if self.retry_after > 0 else 0.0,
        )
        if cleaned.message:
            return cleaned
        return dataclasses.replace(cleaned, message=terminal_message(cleaned))

    def with_provider(self, provider: str) -> ClassifiedError:
        """Trust an explicit provider over one guessed from the error text.

        A new provider clears the message so it is re-derived with that provider's
        name; the same provider keeps an existing message.
        """
        hint = signals.normalize_provider(provider)
        if (
            self.is_empty
            or not hint
            or (signals.normalize_provider(self.provider) == hint and self.message.strip())
        ):
            return self.normalized()
        # Decided before the message is cleared: clearing it must not empty the error.
        return dataclasses.replace(self, provider=hint, message="")._filled()

    def to_dict(self) -> dict[str, str | bool | int | float]:
        return {
            "kind": str(self.kind),
            "message": self.message,
            "detail": self.detail,
            "provider": self.provider,
            "retryable": self.retryable,
            "status_code": self.status_code,
            "retry_after": self.retry_after,
            "chain_broken": self.chain_broken,
        }


def _error_kind(kind: ErrorKind | str) -> ErrorKind:
    """`kind` as a member; a string is trimmed, and `""` is generic."""
    if isinstance(kind, ErrorKind):
        return kind
    name = kind.strip()
    if not name:
        return ErrorKind.GENERIC
    try:
        return ErrorKind(name)
    except ValueError:
        known = ", ".join(k.value for k in ErrorKind)
        raise ValueError(f"unknown error kind {kind!r}; known kinds: {known}") from None


def _cap_detail(detail: str) -> str:
    detail = detail.strip()
    if len(detail) <= MAX_DETAIL_CHARS:
        return detail
    return detail[: MAX_DETAIL_CHARS - 1] + "…"


class ClassifiedException(Exception):
    """`error` carrying a classification that `classify()` returns as is."""

    def __init__(self, error: BaseException, classified: ClassifiedError) -> None:
        super().__init__(str(error))
        self.error = error
        self.classified = classified.normalized()
        self.__cause__ = error

    def __str__(self) -> str:
        return str(self.error)


def with_classification(error: BaseException, classified: ClassifiedError) -> ClassifiedException:
    """Pin `classified` to `error`; re-wrapping a `ClassifiedException` replaces it."""
    if isinstance(error, ClassifiedException):
        error = error.error
    return ClassifiedException(error, classified)


def classify(error: BaseException | None, *, provider: str = "") -> ClassifiedError:
    """Describe `error` for users and the retry policy; `provider` overrides text hints."""
    if error is None:
        return ClassifiedError()
    chain = signals.error_chain(error)
    for link in chain:
        if isinstance(link, ClassifiedException):
            return link.classified.with_provider(provider)
    evidence = _Evidence.gather(chain, signals.normalize_provider(provider))
    if evidence is None:
        return ClassifiedError()
    # There is evidence, so even a bare generic result says something (`_filled`).
    for rule in _RULES:
        if (found := rule(evidence)) is not None:
            return found._filled()
    return dataclasses.replace(evidence.base, kind=ErrorKind.GENERIC)._filled()


@dataclasses.dataclass(frozen=True, slots=True)
class _Evidence:
    """Everything the rules look at, read once from the exception chain."""

    lower: str  # the chain's text, lower-cased
    detail_lower: str  # the provider's structured detail, lower-cased
    deadline: bool
    canceled: bool
    transport_reset: bool
    base: ClassifiedError  # detail, provider, status and retry-after; no kind yet

    @classmethod
    def gather(cls, chain: list[BaseException], hint: str) -> _Evidence | None:
        details = signals.provider_details(chain)
        lower = signals.chain_text(chain).lower()
        deadline = _any_instance(chain, TimeoutError) or _says(lower, signals.DEADLINE)
        canceled = _any_instance(chain, asyncio.CancelledError) or _says(lower, signals.CANCELED)
        transport_reset = _any_instance(chain, ProviderTransportReset)
        if not lower and details.is_empty and not (deadline or canceled or transport_reset):
            return None
        base = ClassifiedError(
            detail=details.detail,
            provider=hint or signals.provider_from_text(lower),
            status_code=details.status_code or signals.status_from_text(lower),
            retry_after=details.retry_after,
        )
        return cls(lower, details.detail.lower(), deadline, canceled, transport_reset, base)

    def says(self, patterns: tuple[str, ...]) -> bool:
        return _says(self.lower, patterns)

    def says_anywhere(self, patterns: tuple[str, ...]) -> bool:
        """In the error text or in the provider's detail body."""
        return _says(self.lower, patterns) or _says(self.detail_lower, patterns)


def _says(text: str, patterns: tuple[str, ...]) -> bool:
    return signals.contains_any(text, patterns)


def _any_instance(chain: list[BaseException], kind: type[BaseException]) -> bool:
    return any(isinstance(link, kind) for link in chain)


def _interrupted(ev: _Evidence) -> ClassifiedError | None:
    if not ev.says(signals.INTERRUPTED):
        return None
    return dataclasses.replace(ev.base, kind=ErrorKind.GENERIC, message=_CANCELED_MESSAGE)


def _continuity_diagnostic(ev: _Evidence) -> ClassifiedError | None:
    for pattern, diagnostic in signals.CONTINUITY_DIAGNOSTICS:
        if ev.says_anywhere((pattern,)):
            return dataclasses.replace(
                ev.base, kind=ErrorKind.GENERIC, message=_CONTINUITY_MESSAGE, detail=diagnostic
            )
    return None


def _chain_broken(ev: _Evidence) -> ClassifiedError | None:
    if not signals.is_chain_broken(f"{ev.lower}\n{ev.detail_lower}"):
        return None
    return dataclasses.replace(
        ev.base,
        kind=ErrorKind.GENERIC,
        message=_CHAIN_BROKEN_MESSAGE,
        # Only OpenAI's Responses API chains turns by previous_response_id.
        provider=ev.base.provider or "openai",
        retryable=True,
        chain_broken=True,
    )


def _stream_truncated(ev: _Evidence) -> ClassifiedError | None:
    for pattern, stream_provider in signals.STREAM_TRUNCATION:
        if ev.says((pattern,)):
            provider = ev.base.provider or stream_provider
            closed = f"{display_name(provider)} stream closed unexpectedly"
            return dataclasses.replace(
                ev.base,
                kind=ErrorKind.TIMEOUT,
                message=_capitalize(f"{closed} before the response completed."),
                provider=provider,
                retryable=True,
            )
    return None


def _signal(ev: _Evidence) -> ClassifiedError | None:
    # Config beats the ambiguous wrapper signals, so "503 invalid model" fails fast;
    # overloaded, usage limits and strong auth stay ahead of it as root causes.
    # Provider-disabled precedes timeout because the gateway sends it with a 503.
    status = ev.base.status_code
    config = ev.says(signals.CONFIG)
    timeout = (
        (ev.transport_reset and status == 0)
        or ev.deadline
        or status in _TIMEOUT_STATUSES
        or ev.says(signals.TIMEOUT)
    )
    rules: tuple[tuple[bool, ErrorKind, bool], ...] = (
        (status == 529 or ev.says(signals.OVERLOADED), ErrorKind.OVERLOADED, True),
        (
            ev.says_anywhere(signals.USAGE_LIMIT_ANY_STATUS)
            or (status != 429 and ev.says_anywhere(signals.USAGE_LIMIT)),
            ErrorKind.USAGE_LIMIT,
            False,
        ),
        (status == 401 or ev.says(signals.AUTH_STRONG), ErrorKind.AUTH, False),
        ((status == 403 or ev.says(signals.AUTH_WEAK)) and not config, ErrorKind.AUTH, False),
        ((status == 429 or ev.says(signals.RATE_LIMIT)) and not config, ErrorKind.RATE_LIMIT, True),
        (ev.says(signals.PROVIDER_DISABLED), ErrorKind.PROVIDER_DISABLED, False),
        (timeout and not config, ErrorKind.TIMEOUT, not ev.deadline),
        (config, ErrorKind.CONFIG, False),
        (status == 500 or ev.says(signals.GENERIC_RETRYABLE), ErrorKind.GENERIC, True),
    )
    for matched, kind, retryable in rules:
        if matched:
            return dataclasses.replace(ev.base, kind=kind, retryable=retryable)
    return None


def _canceled(ev: _Evidence) -> ClassifiedError | None:
    # Last, so "status 401 ... context canceled" still reads as an auth failure.
    if not ev.canceled:
        return None
    return dataclasses.replace(ev.base, kind=ErrorKind.GENERIC, message=_CANCELED_MESSAGE)


# First match wins. Whatever matches none is a generic, non-retryable error.
_RULES: tuple[Callable[[_Evidence], ClassifiedError | None], ...] = (
    _interrupted,
    _continuity_diagnostic,
    _chain_broken,
    _stream_truncated,
    _signal,
    _canceled,
)


def display_name(provider: str) -> str:
    """ "OpenAI", "AWS Bedrock", ...; "the AI provider" for a provider chatd does not know."""
    return signals.known_display_name(provider) or _UNKNOWN_SUBJECT


def _capitalize(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _disabled_provider(provider: str) -> str:
    name = signals.known_display_name(provider)
    return f"The {name} provider" if name else "The AI provider"


def terminal_message(c: ClassifiedError) -> str:
    """The sentence shown when a run fails with `c`: what happened and what to do next."""
    subject = display_name(c.provider)
    match c.kind:
        case ErrorKind.OVERLOADED:
            message = f"{subject} is temporarily overloaded."
        case ErrorKind.RATE_LIMIT:
            message = f"{subject} is rate limiting requests."
        case ErrorKind.TIMEOUT if not c.retryable and not c.status_code:
            message = "The request timed out before it completed."
        case ErrorKind.TIMEOUT:
            message = f"{subject} is temporarily unavailable."
        case ErrorKind.STARTUP_TIMEOUT:
            message = f"{subject} did not start responding in time."
        case ErrorKind.STREAM_SILENCE_TIMEOUT:
            message = f"{subject} did not send response data in time."
        case ErrorKind.USAGE_LIMIT:
            message = (
                f"The usage quota for {subject} has been exceeded. "
                "Check the billing and quota settings for the provider account."
            )
        case ErrorKind.AUTH:
            message = f"Authentication with {subject} failed. Check the API key and permissions."
        case ErrorKind.CONFIG:
            message = (
                f"{subject} rejected the model configuration. "
                "Check the selected model and provider settings."
            )
        case ErrorKind.MISSING_KEY:
            message = (
                "This conversation was started with an API key that is no longer available. "
                "Send your message again to continue."
            )
        case ErrorKind.PROVIDER_DISABLED:
            message = (
                f"{_disabled_provider(c.provider)} has been disabled. "
                "Contact your Coder administrator."
            )
        case ErrorKind.CONTENT_FILTER:
            message = f"{subject} blocked this response under its content policy."
        case ErrorKind.INTERNAL:
            message = (
                "The turn failed inside chatd; the server log has the details. "
                "Send your message again to retry."
            )
        case _ if not c.retryable and not c.status_code:
            message = "The chat request failed unexpectedly."
        case _:
            message = f"{subject} returned an unexpected error."
    return _capitalize(message)


def retry_message(c: ClassifiedError) -> str:
    """The sentence shown beside a retry countdown: the facts, no remediation advice."""
    if c.retryable and c.message.strip():
        return c.message.strip()
    subject = display_name(c.provider)
    match c.kind:
        case ErrorKind.TIMEOUT:
            message = f"{subject} is temporarily unavailable."
        case ErrorKind.USAGE_LIMIT:
            message = f"The usage quota for {subject} has been exceeded."
        case ErrorKind.AUTH:
            message = f"Authentication with {subject} failed."
        case ErrorKind.CONFIG:
            message = f"{subject} rejected the model configuration."
        case ErrorKind.MISSING_KEY:
            message = "The API key for this conversation is no longer available."
        case ErrorKind.PROVIDER_DISABLED:
            message = f"{_disabled_provider(c.provider)} has been disabled by an administrator."
        case ErrorKind.INTERNAL:
            message = "The turn failed inside chatd."
        case (
            ErrorKind.OVERLOADED
            | ErrorKind.RATE_LIMIT
            | ErrorKind.STARTUP_TIMEOUT
            | ErrorKind.STREAM_SILENCE_TIMEOUT
            | ErrorKind.CONTENT_FILTER
        ):
            # These sentences carry no advice, so the terminal wording fits as is.
            return terminal_message(c)
        case _:
            message = f"{subject} returned an unexpected error."
    return _capitalize(message)
