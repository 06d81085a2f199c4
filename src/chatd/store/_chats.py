"""The transitions the API calls (spec §2.4): create, send, edit, queue, interrupt, results.

Each method is one transaction on the locked chat row; its precondition is the
first thing it checks and a refusal raises before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from chatd.store._agents import (
    answer_waits,
    interrupt_locked,
    lock_busy_children,
    wait_calls,
    wait_deadline,
)
from chatd.store._base import StoreBase
from chatd.store._errors import InvalidRequest, NotFound
from chatd.store._files import link_files
from chatd.store._ids import new_id
from chatd.store._models import (
    PLAN_MODE,
    BusyBehavior,
    Chat,
    ChatStatus,
    QueuedMessage,
    SendResult,
    StoredMessage,
    Visibility,
)
from chatd.store._schema import chat_messages, chat_queued_messages, chats
from chatd.store._tx import Tx, chat_from_row, message_from_row
from chatd.types import FilePart, MessagePart, Role, TextPart, ToolResultPart

__all__ = ["ChatTransitions"]

# 256 characters: the title column's limit (spec §3.2); a default title is the
# start of the first message, at most 80 characters.
MAX_TITLE = 256
_DEFAULT_TITLE_CHARS = 80
# The default title of a first message without text.
NO_TEXT_TITLE = "New chat"


def default_title(parts: Sequence[MessagePart]) -> str:
    for part in parts:
        if isinstance(part, TextPart) and part.text.strip():
            text = " ".join(part.text.split())
            return text if len(text) <= _DEFAULT_TITLE_CHARS else text[:79] + "…"
    return NO_TEXT_TITLE


class ChatTransitions(StoreBase):
    async def create_chat(
        self,
        owner_id: str,
        parts: list[MessagePart],
        *,
        title: str | None = None,
        model_config_id: str | None = None,
        tool_config: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        request_key: str | None = None,
        prior: Sequence[tuple[Role, list[MessagePart]]] = (),
        mode: str | None = None,
        parent_id: str | None = None,
    ) -> Chat:
        """N → P0: the chat, its system prompt (if any), the `prior` history a client
        brings along (OpenAI-style APIs send the whole conversation) and the user
        message that starts the turn.

        A repeated `request_key` (Idempotency-Key) of the same owner returns the chat
        it created the first time, unchanged. With `parent_id` the chat is a child
        (`spawn_agent`) of that chat, which must be the owner's and not a child itself.
        """
        _check_parts(parts)
        now = self.clock()
        chat_id = new_id()
        async with self.db.write() as conn:
            if parent_id is not None:
                await _check_parent(conn, parent_id, owner_id)
            if request_key is not None:
                existing = (
                    (
                        await conn.execute(
                            sa.select(chats).where(
                                chats.c.owner_id == owner_id,
                                chats.c.create_request_key == request_key,
                            )
                        )
                    )
                    .mappings()
                    .first()
                )
                if existing is not None:
                    return chat_from_row(existing)
            messages: list[dict[str, Any]] = []
            if system_prompt:
                messages.append(
                    {
                        "role": Role.SYSTEM,
                        "kind": "system_prompt",
                        "visibility": Visibility.MODEL,
                        "parts": [TextPart(system_prompt)],
                    }
                )
            for role, prior_parts in prior:
                _check_parts(prior_parts)
                created_by = owner_id if role == Role.USER else None
                messages.append({"role": role, "parts": prior_parts, "created_by": created_by})
            messages.append(
                {
                    "role": Role.USER,
                    "parts": parts,
                    "created_by": owner_id,
                    "model_config_id": model_config_id,
                }
            )
            row: dict[str, Any] = {
                "id": chat_id,
                "owner_id": owner_id,
                "title": (title or default_title(parts))[:MAX_TITLE],
                "title_source": "user" if title else "default",
                "status": ChatStatus.PENDING,
                "archived": False,
                "model_config_id": model_config_id,
                "tool_config": tool_config or {},
                "system_prompt": system_prompt,
                "snapshot_version": 1,
                "history_version": 1,
                "queue_version": 0,
                "generation_attempt": 0,
                "retry_state_version": 0,
                "lease_epoch": 0,
                "seq_reserved": 0,
                "emitted_state": None,
                "pruned_through_seq": 0,
                "last_position": len(messages),
                "queue_length": 0,
                "boundary_position": 0,
                "history_reset_version": 0,
                "worker_id": None,
                "runner_id": None,
                "last_error": None,
                "retry_state": None,
                "requires_action_deadline_at": None,
                "compaction_requested_at": None,
                "create_request_key": request_key,
                "mode": mode,
                "parent_id": parent_id,
                "created_at": now,
                "updated_at": now,
            }
            await conn.execute(sa.insert(chats).values(row))
            messages[-1]["parts"] = await link_files(conn, chat_id, owner_id, parts)
            await conn.execute(
                sa.insert(chat_messages),
                [
                    {
                        "id": new_id(),
                        "chat_id": chat_id,
                        "position": position,
                        "compressed": False,
                        "deleted": False,
                        "revision": 1,
                        "created_at": now,
                        "visibility": Visibility.BOTH,
                        "kind": None,
                        "created_by": None,
                        "model_config_id": None,
                    }
                    | message
                    for position, message in enumerate(messages, start=1)
                ],
            )
        chat = chat_from_row(row)
        self._committed(chat)
        return chat

    async def send_message(
        self,
        chat_id: str,
        parts: list[MessagePart],
        *,
        busy_behavior: BusyBehavior = BusyBehavior.QUEUE,
        created_by: str | None = None,
        model_config_id: str | None = None,
        request_key: str | None = None,
        approve_plan: bool = False,
    ) -> SendResult:
        """Append a user message, queue it, or interrupt with it (the table of spec §2.4).

        With `approve_plan` the message approves the plan: the chat leaves plan mode in
        the same transaction (refused when it is not in plan mode).
        """
        _check_parts(parts)
        async with self._transition(chat_id, "send_message") as tx:
            if request_key is not None:
                replay = await _find_request(tx, request_key)
                if replay is not None:
                    return replay
            if tx.archived:
                raise tx.reject()
            if approve_plan:
                if tx.row["mode"] != PLAN_MODE:
                    raise tx.reject(message="The chat is not in plan mode: no plan to approve.")
                tx.set(mode=None)
            parts = await link_files(tx.conn, chat_id, tx.row["owner_id"], parts)
            status = tx.status
            interrupt = busy_behavior == BusyBehavior.INTERRUPT
            sent: dict[str, Any] = {
                "created_by": created_by,
                "model_config_id": model_config_id,
                "request_key": request_key,
            }
            message: StoredMessage | None = None
            queued: QueuedMessage | None = None
            if status in (ChatStatus.WAITING, ChatStatus.ERROR):
                tx.set(last_error=None)
                if tx.queue_length:  # E1: m joins the tail, the head runs now
                    queued = await tx.enqueue(parts, **sent)
                    await tx.promote((await tx.queue())[0].id)
                else:
                    message = await tx.append_user_message(parts, **sent)
                tx.set_status(ChatStatus.PENDING)
            elif status == ChatStatus.PENDING:
                if interrupt:
                    message = await tx.append_user_message(parts, **sent)
                else:
                    queued = await tx.enqueue(parts, **sent)
            elif status == ChatStatus.RUNNING:
                queued = await tx.enqueue(parts, head=interrupt, **sent)
                if interrupt:
                    tx.set_status(ChatStatus.INTERRUPTING)
            elif status == ChatStatus.INTERRUPTING:
                queued = await tx.enqueue(parts, head=interrupt, **sent)
            else:  # requires_action
                if interrupt:
                    message = await tx.append_user_message(parts, **sent)
                    tx.set(requires_action_deadline_at=None)
                    tx.set_status(ChatStatus.PENDING)
                else:
                    queued = await tx.enqueue(parts, **sent)
            chat = await tx.save()
            if queued is not None and queued.id not in {q.id for q in await tx.queue()}:
                queued = None  # promoted straight away (E1)
            return SendResult(chat=chat, message=message, queued=queued)

    async def edit_message(
        self,
        chat_id: str,
        message_id: str,
        parts: list[MessagePart],
        *,
        created_by: str | None = None,
        keep_files: bool = False,
    ) -> SendResult:
        """Any non-archived state → P0: replace a user message, dropping what followed it.

        The edited message and every later one are soft-deleted, the queue and the
        last error are cleared, ownership is released (the old runner's next fenced
        write fails), and the replacement is appended as a new user message; with
        `keep_files` it names the edited message's uploaded files first.
        """
        _check_parts(parts)
        async with self._transition(chat_id, "edit_message") as tx:
            if tx.archived:
                raise tx.reject()
            m = chat_messages.c
            row = (
                (
                    await tx.conn.execute(
                        sa.select(m.position, m.role, m.deleted, m.compressed, m.parts).where(
                            m.chat_id == chat_id, m.id == message_id
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None or row["deleted"]:
                raise NotFound("message", message_id)
            if row["role"] != Role.USER:
                raise InvalidRequest("invalid_request", "Only user messages can be edited.")
            if row["compressed"]:
                raise InvalidRequest(
                    "invalid_request",
                    "This message is before the last compaction or clear and can no longer "
                    "be edited.",
                )
            if keep_files:
                kept = [p for p in row["parts"] if isinstance(p, FilePart) and p.file_id]
                parts = [*kept, *parts]
            parts = await link_files(tx.conn, chat_id, tx.row["owner_id"], parts)
            version = tx.bump()
            await tx.conn.execute(
                sa.update(chat_messages)
                .where(m.chat_id == chat_id, m.position >= row["position"], ~m.deleted)
                .values(deleted=True, revision=version)
            )
            await tx.clear_queue()
            await tx.release_lease()
            tx.clear_retry_state()
            tx.set(
                last_error=None,
                requires_action_deadline_at=None,
                compaction_requested_at=None,
            )
            [message] = await tx.append_messages(
                [{"role": Role.USER, "parts": parts, "created_by": created_by}]
            )
            tx.history_changed(reset=True)
            tx.set_status(ChatStatus.PENDING)
            return SendResult(chat=await tx.save(), message=message)

    async def delete_queued_message(self, chat_id: str, queued_id: str) -> Chat:
        """E1/P1/R1/I1/A1 → the same status, one queued message fewer."""
        async with self._transition(chat_id, "delete_queued_message") as tx:
            if tx.archived:
                raise tx.reject()
            await tx.dequeue(queued_id)
            return await tx.save()

    async def promote_queued_message(self, chat_id: str, queued_id: str) -> Chat:
        """Make a queued message the next one: E1/P1/A1 → P, R1 → I1, I1 → I1."""
        async with self._transition(chat_id, "promote_queued_message") as tx:
            if tx.archived:
                raise tx.reject()
            await tx.find_queued(queued_id)
            status = tx.status
            if status in (ChatStatus.RUNNING, ChatStatus.INTERRUPTING):
                await tx.move_to_head(queued_id)
                tx.set_status(ChatStatus.INTERRUPTING)
            else:  # error, pending, requires_action (waiting has no queue)
                await tx.promote(queued_id)
                tx.set(last_error=None, requires_action_deadline_at=None)
                tx.set_status(ChatStatus.PENDING)
            return await tx.save()

    async def interrupt(self, chat_id: str) -> Chat:
        """R → I; P and A finish the interruption inline (→ W, or P with the queue head).

        Interrupting an interrupting chat is a no-op, not an error. The chat's busy
        children are interrupted in the same transaction, also when the chat itself
        is idle (it spawned them and ended its turn without waiting).
        """
        async with self._transition(chat_id, "interrupt") as tx:
            children = await lock_busy_children(tx)
            if not (children and tx.status in _IDLE and not tx.archived):
                tx.require(
                    ChatStatus.RUNNING,
                    ChatStatus.INTERRUPTING,
                    ChatStatus.PENDING,
                    ChatStatus.REQUIRES_ACTION,
                )
            interrupted = [await interrupt_locked(child) for child in children]
            if tx.status in (*_IDLE, ChatStatus.INTERRUPTING):
                chat = tx.chat
            else:
                await interrupt_locked(tx)
                chat = tx.saved or tx.chat
        for child in interrupted:
            self._committed(child)
        return chat

    async def complete_requires_action(
        self, chat_id: str, results: Sequence[ToolResultPart]
    ) -> Chat:
        """A → P: the client's results for every pending dynamic call, as one tool message."""
        async with self._transition(chat_id, "complete_requires_action") as tx:
            tx.require(ChatStatus.REQUIRES_ACTION)
            calls = await tx.pending_tool_calls()
            waits = wait_calls(calls)
            # `wait_agent` is answered by the chat's agents, never by the client.
            pending = [call for call in calls if call not in waits]
            if not pending:
                raise tx.reject(
                    message="The chat is waiting for its agents (wait_agent); there are "
                    "no client tool calls to answer."
                )
            by_id = {result.tool_call_id: result for result in results}
            if len(by_id) != len(results) or set(by_id) != {c.tool_call_id for c in pending}:
                raise InvalidRequest(
                    "invalid_tool_results",
                    "Submit exactly one result for each pending tool call: "
                    + ", ".join(c.tool_call_id for c in pending),
                )
            ordered: list[MessagePart] = []
            for call in pending:
                result = by_id[call.tool_call_id]
                ordered.append(
                    msgspec.structs.replace(
                        result,
                        tool_name=result.tool_name or call.tool_name,
                        created_at=result.created_at or tx.now,
                    )
                )
            await tx.append_messages([{"role": Role.TOOL, "parts": ordered}])
            if waits:  # the agents' answer makes the chat pending once they have settled
                tx.set(requires_action_deadline_at=wait_deadline(tx, waits))
                tx.bump()
                await answer_waits(tx, expired=False)
                return await tx.save()
            tx.set(requires_action_deadline_at=None)
            tx.set_status(ChatStatus.PENDING)
            return await tx.save()


_IDLE = (ChatStatus.WAITING, ChatStatus.ERROR)


async def _check_parent(conn: Any, parent_id: str, owner_id: str) -> None:
    c = chats.c
    row = (await conn.execute(sa.select(c.owner_id, c.parent_id).where(c.id == parent_id))).first()
    if row is None or row.owner_id != owner_id:
        raise NotFound("chat", parent_id)
    if row.parent_id is not None:
        raise InvalidRequest(
            "invalid_request", "An agent cannot start agents of its own (depth 1)."
        )


async def _find_request(tx: Tx, request_key: str) -> SendResult | None:
    """The earlier outcome of a send with this Idempotency-Key, if there was one."""
    m = chat_messages.c
    row = (
        (
            await tx.conn.execute(
                sa.select(chat_messages).where(m.chat_id == tx.id, m.request_key == request_key)
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        return SendResult(chat=tx.chat, message=message_from_row(row), replayed=True)
    q = chat_queued_messages.c
    queued = (
        (
            await tx.conn.execute(
                sa.select(chat_queued_messages).where(
                    q.chat_id == tx.id, q.request_key == request_key
                )
            )
        )
        .mappings()
        .first()
    )
    if queued is not None:
        return SendResult(chat=tx.chat, queued=QueuedMessage(**dict(queued)), replayed=True)
    return None


def _check_parts(parts: Sequence[MessagePart]) -> None:
    if not parts:
        raise InvalidRequest("invalid_request", "A message needs at least one part.")
