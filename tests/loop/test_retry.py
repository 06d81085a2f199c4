"""Retry policy (upstream chatretry_test.go): schedule, cap, Retry-After, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from chatd.errors import ClassifiedError, ClassifiedException, ErrorKind, classify
from chatd.loop import retry as retry_mod
from chatd.loop.retry import INITIAL_DELAY, MAX_ATTEMPTS, MAX_DELAY, delay, retry


class Sleeps:
    """A recording sleep that takes no wall time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60), (10, 60), (100, 60)],
)
def test_delay(attempt: int, expected: float) -> None:
    assert delay(attempt) == expected


def test_policy_constants() -> None:
    assert (INITIAL_DELAY, MAX_DELAY, MAX_ATTEMPTS) == (1.0, 60.0, 25)


def test_retry_after_is_a_minimum_not_a_maximum() -> None:
    assert delay(0, retry_after=5) == 5  # provider asks for longer than backoff
    assert delay(4, retry_after=5) == 16  # backoff already longer
    assert delay(0, retry_after=10_000) == retry_mod.MAX_RETRY_AFTER  # bogus value capped


async def test_retry_success_on_first_try() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    assert await retry(fn, sleep=Sleeps()) == "ok"
    assert calls == 1


@pytest.mark.parametrize("failures", [1, 3])
async def test_retry_transient_then_success(failures: int) -> None:
    calls = 0
    sleeps = Sleeps()

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert await retry(fn, sleep=sleeps) == "ok"
    assert calls == failures + 1
    assert sleeps.delays == [delay(n) for n in range(failures)]


async def test_retry_non_retryable_error() -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("status 401 unauthorized: invalid api key")

    with pytest.raises(ClassifiedException) as info:
        await retry(fn, sleep=Sleeps())
    assert calls == 1
    assert str(info.value) == "status 401 unauthorized: invalid api key"
    assert info.value.classified.kind == ErrorKind.AUTH


async def test_retry_gives_up_after_max_attempts() -> None:
    calls = 0
    sleeps = Sleeps()

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("status 503 service unavailable")

    with pytest.raises(ClassifiedException) as info:
        await retry(fn, sleep=sleeps)
    assert calls == MAX_ATTEMPTS
    assert len(sleeps.delays) == MAX_ATTEMPTS - 1
    assert str(info.value).startswith("max retry attempts (25) exceeded: ")
    assert info.value.classified.kind == ErrorKind.TIMEOUT


async def test_retry_honours_retry_after() -> None:
    sleeps = Sleeps()
    calls = 0

    def classify_with_retry_after(err: BaseException) -> ClassifiedError:
        return ClassifiedError(kind=ErrorKind.RATE_LIMIT, retryable=True, retry_after=7.5)

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("429")
        return "ok"

    await retry(fn, sleep=sleeps, classify_error=classify_with_retry_after)
    assert sleeps.delays == [7.5]


async def test_retry_context_canceled_during_wait() -> None:
    started = asyncio.Event()

    async def slow_sleep(_: float) -> None:
        started.set()
        await asyncio.sleep(3600)

    async def fn() -> None:
        raise RuntimeError("status 529 overloaded")

    task = asyncio.create_task(retry(fn, sleep=slow_sleep))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_retry_context_canceled_during_fn() -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        # The caller's scope is cancelled while fn fails with a retryable error.
        current = asyncio.current_task()
        assert current is not None
        current.cancel()
        raise RuntimeError("status 503")

    task = asyncio.create_task(retry(fn, sleep=Sleeps()))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


async def test_retry_on_retry_called_with_correct_args() -> None:
    seen: list[tuple[int, str, str, float]] = []
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"status 503 try {calls}")
        return "ok"

    await retry(
        fn,
        sleep=Sleeps(),
        on_retry=lambda attempt, err, c, d: seen.append((attempt, str(err), c.kind, d)),
    )
    assert seen == [
        (1, "status 503 try 1", "timeout", 1.0),
        (2, "status 503 try 2", "timeout", 2.0),
    ]


async def test_retry_on_retry_none_does_not_panic() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("overloaded")
        return "ok"

    assert await retry(fn, on_retry=None, sleep=Sleeps()) == "ok"


@pytest.mark.parametrize(
    ("message", "kind", "status"),
    [
        ("status 401 unauthorized: context canceled", ErrorKind.AUTH, 401),
        ("insufficient_quota: context canceled", ErrorKind.USAGE_LIMIT, 0),
    ],
)
async def test_retry_context_canceled_non_retryable_does_not_wrap_as_transport_reset(
    message: str, kind: ErrorKind, status: int
) -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(message)

    with pytest.raises(ClassifiedException) as info:
        await retry(fn, sleep=Sleeps())
    assert calls == 1
    assert info.value.classified.kind == kind
    assert info.value.classified.status_code == status
    assert classify(info.value).kind == kind  # the classification travels with the error
