"""Timing helpers shared by the benchmarks: medians over repeated runs."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable


def median_seconds(fn: Callable[[], Awaitable[object]], repeats: int = 11) -> float:
    """Median wall time of `await fn()` over `repeats` runs, each on a fresh event loop turn."""

    async def timed() -> list[float]:
        await fn()  # warm-up
        times = []
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - start)
        return times

    return statistics.median(asyncio.run(timed()))
