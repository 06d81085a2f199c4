"""Admission: a replica claims no chats while its event loop is overloaded.

A replica offered more chats than its core can stream would otherwise claim them
all and slow every chat and API call alike. Past `acquire_max_lag` of timer lag,
or with the loop's thread busy more than `acquire_max_busy` of a core, extra chats
wait `pending` (for this replica's next tick, or another's), and what is left of
the core answers API calls such as interrupts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from chatd.config import Settings

__all__ = ["BUSY_WINDOW", "LAG_SAMPLE_INTERVAL", "Admission", "claim_limit"]

log = logging.getLogger("chatd.worker")

# The event loop's lag is sampled this often; a spike decays by half per sample.
LAG_SAMPLE_INTERVAL = 0.1
# ...and its thread's CPU over windows this long (seconds).
BUSY_WINDOW = 2.0


def claim_limit(batch: int, *, busy: float, max_busy: float, running: int, unmeasured: int) -> int:
    """How many chats one acquisition may claim: `batch`, or fewer near `max_busy`.

    A chat's cost reaches the loop's busy share only once it streams, so a replica
    that claimed a whole batch per tick would overshoot its limit (and leave nothing
    for API calls such as interrupts). The room left is priced at the measured chats'
    average share (everything the loop does counts, so the price errs high), less
    the `unmeasured` chats claimed too recently to be in the measure yet; while
    below the limit with nothing unmeasured, at least one chat is taken.
    """
    if max_busy <= 0 or running == 0 or busy <= 0:
        return batch  # off, or nothing to price a chat by
    measured = running - unmeasured if running > unmeasured else running
    room = int((max_busy - busy) * measured / busy) - unmeasured
    if room < 1 and unmeasured == 0 and busy < max_busy:
        room = 1
    return max(0, min(batch, room))


class Admission:
    """The event loop's measured load, and how many chats a replica may claim now."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # How late the event loop runs timers (seconds, decaying max of the samples).
        self.loop_lag = 0.0
        # The share of a core the event loop's thread used over the last BUSY_WINDOW.
        self.loop_busy = 0.0
        self._admitting = True
        # (when, how many) chats were claimed within the last BUSY_WINDOW: their cost
        # is not in `loop_busy` yet.
        self._claims: deque[tuple[float, int]] = deque()

    async def sample(self, running: Callable[[], bool]) -> None:
        """Sample the loop's lag and its thread's busy share while `running()`."""
        loop = asyncio.get_running_loop()
        window_wall, window_cpu = loop.time(), time.thread_time()
        while running():
            start = loop.time()
            await asyncio.sleep(LAG_SAMPLE_INTERVAL)
            now = loop.time()
            self.loop_lag = max(now - start - LAG_SAMPLE_INTERVAL, self.loop_lag / 2)
            if now - window_wall >= BUSY_WINDOW:
                cpu = time.thread_time()  # this thread runs the event loop
                self.loop_busy = (cpu - window_cpu) / (now - window_wall)
                window_wall, window_cpu = now, cpu

    def admitting(self, running: int) -> bool:
        """Whether the replica takes new chats (logged when it changes)."""
        max_lag, max_busy = self.settings.acquire_max_lag, self.settings.acquire_max_busy
        lagging = max_lag > 0 and self.loop_lag > max_lag
        busy = max_busy > 0 and self.loop_busy > max_busy
        admitting = not lagging and not busy
        if admitting != self._admitting:
            self._admitting = admitting
            if admitting:
                log.info(
                    "event loop lag %.0f ms, busy %.0f %%: claiming chats again",
                    self.loop_lag * 1e3,
                    self.loop_busy * 100,
                )
            else:
                log.warning(
                    "event loop lag %.0f ms, busy %.0f %% of a core (limits: "
                    "CHATD_ACQUIRE_MAX_LAG %.0f ms, CHATD_ACQUIRE_MAX_BUSY %.0f %%): not "
                    "claiming chats until it recovers (%d running)",
                    self.loop_lag * 1e3,
                    self.loop_busy * 100,
                    max_lag * 1e3,
                    max_busy * 100,
                    running,
                )
        return admitting

    def limit(self, free: int, running: int) -> int:
        """How many chats to claim now, with `free` slots and `running` chats."""
        if free <= 0 or not self.admitting(running):
            return 0
        cutoff = time.monotonic() - BUSY_WINDOW
        while self._claims and self._claims[0][0] < cutoff:
            self._claims.popleft()
        return claim_limit(
            min(free, self.settings.acquire_batch),
            busy=self.loop_busy,
            max_busy=self.settings.acquire_max_busy,
            running=running,
            unmeasured=sum(n for _, n in self._claims),
        )

    def claimed(self, count: int) -> None:
        if count:
            self._claims.append((time.monotonic(), count))
