"""The stream hub: seq order, resume exactly once, caps, slow watchers (service spec §5)."""

from __future__ import annotations

import asyncio
import json
import re

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from chatd.loop import Metrics
from chatd.stream import StreamEvent, StreamHub, encode_event
from chatd.stream.hub import event_from_payload
from tests.loop.promhelpers import gather, series

CHAT = "chat-1"
FRAME = re.compile(rb"(?:id: (\d+)\n)?event: (\w+)\ndata: (.*)\n\n")


def ev(seq: int, text: str = "x") -> StreamEvent:
    return encode_event(CHAT, seq, "message_part", {"role": "assistant", "part": {"delta": text}})


def parse(chunks: list[bytes]) -> list[tuple[int | None, str, dict[str, object]]]:
    out = []
    for chunk in chunks:
        for match in FRAME.finditer(chunk):
            seq = int(match.group(1)) if match.group(1) else None
            out.append((seq, match.group(2).decode(), json.loads(match.group(3))))
    return out


async def collect_backlog(sub: object) -> list[bytes]:
    return [f async for f in sub.backlog()]  # type: ignore[attr-defined]


async def drain_live(sub: object, expected: int) -> list[bytes]:
    got: list[bytes] = []
    seen = 0
    async for chunk in sub.live():  # type: ignore[attr-defined]
        got.append(chunk)
        seen += len(parse([chunk]))
        if seen >= expected:
            break
    return got


def test_encode_event_is_one_complete_sse_frame() -> None:
    event = encode_event(CHAT, 41, "status", {"status": "waiting", "archived": False})
    assert event.frame == (
        b"id: 41\nevent: status\ndata: "
        b'{"seq":41,"chat_id":"chat-1","type":"status","status":"waiting","archived":false}\n\n'
    )
    assert json.loads(event.data)["seq"] == 41


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(
        st.text().filter(lambda k: k not in ("seq", "chat_id", "type")), json_values
    )
)
def test_an_event_spliced_from_its_encoded_payload_is_the_encoded_event(
    payload: dict[str, object],
) -> None:
    # The owner encodes a payload once for the frame and the durable row alike.
    spliced = event_from_payload(CHAT, 7, "message_part", msgspec.json.encode(payload))
    assert spliced == encode_event(CHAT, 7, "message_part", payload)
    assert json.loads(spliced.data) == {
        "seq": 7,
        "chat_id": CHAT,
        "type": "message_part",
        **payload,
    }


async def test_live_events_reach_every_watcher_in_order() -> None:
    hub = StreamHub()
    a, b = hub.subscribe(CHAT, 0), hub.subscribe(CHAT, 0)
    assert await collect_backlog(a) == [] and await collect_backlog(b) == []
    for seq in (1, 2, 5):
        assert hub.publish(CHAT, ev(seq))
    for sub in (a, b):
        frames = parse(await drain_live(sub, 3))
        assert [s for s, _, _ in frames] == [1, 2, 5]


async def test_stale_seq_is_discarded() -> None:
    hub = StreamHub()
    hub.publish(CHAT, ev(10))
    assert hub.publish(CHAT, ev(10)) is False
    assert hub.publish(CHAT, ev(3)) is False
    assert hub.newest_seq(CHAT) == 10


async def test_resume_from_cursor_sends_each_seq_once_across_backlog_and_live() -> None:
    hub = StreamHub()
    for seq in range(1, 11):
        hub.publish(CHAT, ev(seq))
    sub = hub.subscribe(CHAT, 4)
    # Events published after registering but before the backlog is read are in
    # both the ring and the live queue: they must arrive once.
    hub.publish(CHAT, ev(11))
    backlog = parse(await collect_backlog(sub))
    hub.publish(CHAT, ev(12))
    live = parse(await drain_live(sub, 1))
    assert [s for s, _, _ in backlog + live] == list(range(5, 13))


async def test_ring_caps_evict_oldest_and_count_drops() -> None:
    reg = CollectorRegistry()
    hub = StreamHub(buffer_events=5, metrics=Metrics(reg))
    for seq in range(1, 9):
        hub.publish(CHAT, ev(seq))
    dropped = series(gather(reg)["coderd_chatd_stream_buffer_dropped_total"])[0].value
    assert dropped == 3
    # Resuming below what memory still holds, with no durable log: reset, then the rest.
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 1)))
    assert frames[0][0] is None and frames[0][1] == "history_reset"
    assert frames[0][2]["reason"] == "resume_gap"
    assert frames[0][2]["keep_through_position"] is None
    assert [s for s, _, _ in frames[1:]] == [4, 5, 6, 7, 8]


async def test_ring_byte_cap_evicts_too() -> None:
    hub = StreamHub(buffer_bytes=400)
    for seq in range(1, 11):
        hub.publish(CHAT, ev(seq, "y" * 50))
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 9)))
    assert [s for s, _, _ in frames] == [10]
    held = parse(await collect_backlog(hub.subscribe(CHAT, 0)))
    assert held[0][1] == "history_reset"
    assert sum(len(ev(s, "y" * 50).frame) for s, _, _ in held[1:]) <= 400


async def test_cursor_above_everything_gets_a_reset_and_the_retained_events() -> None:
    hub = StreamHub()
    hub.publish(CHAT, ev(1))
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 99)))
    assert [t for _, t, _ in frames] == ["history_reset", "message_part"]


class ListLog:
    """The durable log as a list (the store implements the same two methods)."""

    def __init__(self, events: list[StreamEvent], pruned: int = 0) -> None:
        self.events = events
        self.pruned = pruned
        self.reads = 0

    async def stream_bounds(self, chat_id: str) -> tuple[int, int]:
        return self.pruned, max((e.seq for e in self.events), default=0)

    async def read_events_after(
        self, chat_id: str, after_seq: int, limit: int
    ) -> list[StreamEvent]:
        self.reads += 1
        return [e for e in self.events if e.seq > after_seq][:limit]


async def test_resume_reads_the_durable_log_below_the_ring() -> None:
    hub = StreamHub(buffer_events=200)
    log = ListLog([ev(s) for s in range(1, 1201)])
    for seq in range(1001, 1301):  # the ring holds 1101..1300; the log has 1..1200
        hub.publish(CHAT, ev(seq))
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 0, log)))
    assert [s for s, _, _ in frames] == list(range(1, 1301))
    assert log.reads >= 3  # paged, 500 rows at a time


async def test_resume_on_a_replica_with_an_empty_ring_reads_the_log() -> None:
    hub = StreamHub()
    log = ListLog([ev(s) for s in (2, 3, 7)])
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 2, log)))
    assert [s for s, _, _ in frames] == [3, 7]


async def test_resume_below_the_pruned_log_gets_a_reset() -> None:
    hub = StreamHub()
    log = ListLog([ev(s) for s in range(50, 60)], pruned=49)
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 10, log)))
    assert frames[0][1] == "history_reset"
    assert [s for s, _, _ in frames[1:]] == list(range(50, 60))


async def test_slow_watcher_is_closed_not_buffered_forever() -> None:
    hub = StreamHub(watcher_queue=3)
    sub = hub.subscribe(CHAT, 0)
    await collect_backlog(sub)
    for seq in range(1, 6):
        hub.publish(CHAT, ev(seq))
    assert [c async for c in sub.live()] == []
    assert sub.closed_reason == "slow"
    # It reconnects with its cursor and loses nothing.
    frames = parse(await collect_backlog(hub.subscribe(CHAT, 0)))
    assert [s for s, _, _ in frames] == [1, 2, 3, 4, 5]


async def test_keepalive_is_signalled_when_idle() -> None:
    hub = StreamHub()
    sub = hub.subscribe(CHAT, 0)
    live = sub.live(keepalive=0.01)
    assert await anext(live) == b""
    hub.publish(CHAT, ev(1))
    assert parse([await anext(live)])[0][0] == 1


async def test_close_chat_ends_every_watcher() -> None:
    hub = StreamHub()
    sub = hub.subscribe(CHAT, 0)
    task = asyncio.create_task(drain_live(sub, 1))
    await asyncio.sleep(0)
    hub.close_chat(CHAT, "deleted")
    assert await asyncio.wait_for(task, 5) == []
    assert sub.closed_reason == "deleted"


async def test_release_idle_frees_unwatched_rings() -> None:
    hub = StreamHub()
    hub.publish(CHAT, ev(1))
    hub.publish("other", ev(1))
    hub.subscribe("other", 0)
    assert hub.release_idle(idle_seconds=0) == 1
    assert hub.newest_seq(CHAT) == 0 and hub.newest_seq("other") == 1


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(
        st.one_of(st.integers(min_value=1, max_value=5), st.just(-1)), min_size=1, max_size=40
    )
)
def test_reconnecting_with_the_last_id_receives_every_seq_exactly_once(plan: list[int]) -> None:
    """Random bursts of events (n > 0) and reconnects (-1): the client sees 1..N once each."""

    async def scenario() -> None:
        hub = StreamHub(buffer_events=10_000)
        seq = 0
        received: list[int] = []
        sub = hub.subscribe(CHAT, 0)
        pending = [s for s, _, _ in parse(await collect_backlog(sub))]
        received += pending
        for step in plan:
            if step == -1:
                sub.close()
                cursor = received[-1] if received else 0
                sub = hub.subscribe(CHAT, cursor)
                received += [s for s, _, _ in parse(await collect_backlog(sub))]
                continue
            for _ in range(step):
                seq += 1
                hub.publish(CHAT, ev(seq))
            received += [s for s, _, _ in parse(await drain_live(sub, step))]
        assert received == list(range(1, seq + 1))

    asyncio.run(scenario())


async def test_a_pushed_watcher_is_written_by_the_publisher_in_order_exactly_once() -> None:
    hub = StreamHub()
    hub.publish(CHAT, ev(1))
    sub = hub.subscribe(CHAT, 0)
    written: list[bytes] = []
    sub.push = lambda chunk: written.append(chunk) or True
    backlog = await collect_backlog(sub)
    hub.publish(CHAT, ev(2))  # before `live` runs: queued, then yielded by it
    live = sub.live(keepalive=0.05)
    yielded = [await anext(live)]
    waiting = asyncio.ensure_future(anext(live))
    await asyncio.sleep(0)  # `live` hands the watcher to the publisher, then waits
    for seq in (2, 3, 4):  # 2 again: a stale duplicate is never written
        hub.publish(CHAT, ev(seq))
    assert [s for s, _, _ in parse(backlog + yielded + written)] == [1, 2, 3, 4]
    assert [s for s, _, _ in parse(written)] == [3, 4]
    # While the publisher writes, `live` yields nothing but keep-alives when idle.
    assert await asyncio.wait_for(waiting, 5) == b""
    sub.close()
    hub.publish(CHAT, ev(5))
    assert [s for s, _, _ in parse(written)] == [3, 4]


async def test_a_pushed_watcher_too_far_behind_or_broken_is_closed_as_slow() -> None:
    for push_result in (lambda: False, lambda: 1 / 0):
        hub = StreamHub()
        sub = hub.subscribe(CHAT, 0)
        sub.push = lambda _chunk, result=push_result: bool(result())
        live = sub.live()
        waiting = asyncio.ensure_future(anext(live, None))
        await asyncio.sleep(0)
        assert hub.publish(CHAT, ev(1))  # the publisher never fails for a watcher
        assert await asyncio.wait_for(waiting, 5) is None
        assert sub.closed_reason == "slow"
        # It reconnects with its cursor and loses nothing.
        frames = parse(await collect_backlog(hub.subscribe(CHAT, 0)))
        assert [s for s, _, _ in frames] == [1]
