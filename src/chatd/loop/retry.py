"""Retry of model calls: exponential backoff over classified errors.

The whole policy is here: which errors retry (the classification's `retryable`),
how long to wait (1 s doubling to a 60 s cap, no jitter, at least the provider's
Retry-After), and how many attempts (25). It knows nothing about streams or chats;
the loop wraps one step's generation attempt in `retry()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from chatd.errors import ClassifiedError, ClassifiedException, classify, with_classification

__all__ = [
    "INITIAL_DELAY",
    "MAX_ATTEMPTS",
    "MAX_DELAY",
    "MAX_RETRY_AFTER",
    "MULTIPLIER",
    "OnRetry",
    "delay",
    "retry",
]

T = TypeVar("T")

# 1 s, doubling, capped at 60 s, no jitter: upstream chatretry's schedule. A chat
# is one request stream per user, so there is no herd for jitter to spread.
INITIAL_DELAY = 1.0
MULTIPLIER = 2.0
MAX_DELAY = 60.0
# 25 calls at most (24 retries): upstream's bound, about 20 minutes of waiting.
MAX_ATTEMPTS = 25
# A provider's Retry-After is honoured as a minimum delay, but never beyond this:
# a bogus "retry after a day" must not park a chat silently.
MAX_RETRY_AFTER = 600.0

OnRetry = Callable[[int, BaseException, ClassifiedError, float], None]
Sleep = Callable[[float], Awaitable[None]]


def delay(attempt: int, retry_after: float = 0.0) -> float:
    """Backoff before retry number `attempt + 1` (0-indexed): 1, 2, 4, … 60, 60 s.

    `retry_after` (seconds, from the provider) raises the delay, never lowers it.
    """
    backoff = min(INITIAL_DELAY * MULTIPLIER ** min(attempt, 32), MAX_DELAY)
    return max(backoff, min(retry_after, MAX_RETRY_AFTER))


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    on_retry: OnRetry | None = None,
    classify_error: Callable[[BaseException], ClassifiedError] = classify,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """Call `fn` until it succeeds, fails with a non-retryable error, or runs out of attempts.

    A non-retryable failure is raised as a `ClassifiedException` carrying its
    classification. `on_retry(attempt, error, classified, delay)` runs before each
    sleep (attempt is 1-based). Cancellation, whether of `fn` or of the sleep,
    propagates at once.
    """
    attempt = 0
    while True:
        try:
            return await fn()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            classified = classify_error(err)
            if not classified.retryable:
                if isinstance(err, ClassifiedException) and err.classified == classified:
                    raise
                raise with_classification(err, classified) from err
            _raise_if_cancelling()
            attempt += 1
            if attempt >= MAX_ATTEMPTS:
                exhausted = RuntimeError(f"max retry attempts ({MAX_ATTEMPTS}) exceeded: {err}")
                raise with_classification(exhausted, classified) from err
            wait = delay(attempt - 1, classified.retry_after)
            if on_retry is not None:
                on_retry(attempt, err, classified, wait)
            await sleep(wait)


def _raise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
