// One chat as the UI knows it, built from a snapshot (GET chat + messages) and the
// stream's events, following the client contract of spec §5.2: apply events in seq
// order, ignore any seq not above the last applied one, drop the preview when a step's
// message is committed or on preview_reset. No DOM here; app.js renders this state.

export const BUSY = new Set(["pending", "running", "interrupting"]);

export class ChatState {
  constructor(chat, messages, lastSeq) {
    this.id = chat.id;
    this.title = chat.title;
    this.status = chat.status;
    this.archived = chat.archived;
    this.modelConfigId = chat.model_config_id; // null: the deployment default
    this.model = chat.model; // "provider:model" it runs on
    this.builtinTools = chat.tools ? chat.tools.builtin : null; // "all", a list, or null
    this.mode = chat.mode; // "plan" or null
    this.parentId = chat.parent_id || null; // set on an agent (a child chat)
    this.children = chat.children || []; // its agents: [{id, title, status}]
    this.queue = chat.queued_messages || [];
    this.retry = chat.retry_state;
    this.retryReceivedAt = Date.now();
    this.error = chat.status === "error" ? chat.last_error : null;
    this.action = chat.status === "requires_action" ? chat.requires_action : null;
    this.messages = new Map();
    for (const message of messages) this.messages.set(message.id, message);
    this.preview = [];
    this.lastSeq = lastSeq;
    this.interrupted = false;
    this.deleted = false;
    this.needsReload = false;
  }

  get busy() {
    return BUSY.has(this.status);
  }

  /** In requires_action only for its agents (wait_agent): nothing for the user to do. */
  get waitingForAgents() {
    return this.status === "requires_action" && !this.action;
  }

  /** Whether any of its agents still works (their statuses are polled meanwhile). */
  get agentsBusy() {
    return this.children.some((c) => BUSY.has(c.status));
  }

  /** Committed messages in position order. */
  orderedMessages() {
    return [...this.messages.values()].sort((a, b) => a.position - b.position);
  }

  /** Apply one stream event; returns false when it was a duplicate (seq ≤ last applied). */
  apply(type, data) {
    if (typeof data.seq === "number") {
      if (data.seq <= this.lastSeq) return false;
      this.lastSeq = data.seq;
    }
    const handler = HANDLERS[type];
    if (handler) handler(this, data);
    return true;
  }

  upsertMessage(message) {
    const known = this.messages.get(message.id);
    if (!known || (message.revision ?? 0) >= (known.revision ?? 0)) {
      this.messages.set(message.id, message);
    }
  }

  /** Replace the committed history by a fresh read, keeping anything newer already applied. */
  replaceMessages(messages) {
    const previous = this.messages;
    this.messages = new Map();
    for (const message of messages) this.messages.set(message.id, message);
    for (const [id, message] of previous) {
      const fresh = this.messages.get(id);
      if (fresh && (message.revision ?? 0) > (fresh.revision ?? 0)) this.messages.set(id, message);
    }
  }

  appendPart(part) {
    const tail = this.preview[this.preview.length - 1];
    switch (part.type) {
      case "text_delta":
      case "reasoning_delta": {
        const kind = part.type === "text_delta" ? "text" : "reasoning";
        if (tail && tail.kind === kind) tail.text += part.delta;
        else this.preview.push({ kind, text: part.delta });
        break;
      }
      case "tool_input_delta": {
        const tool = this.previewTool(part.tool_call_id, part.tool_name);
        tool.input += part.delta;
        break;
      }
      case "tool_call": {
        const tool = this.previewTool(part.tool_call_id, part.tool_name);
        tool.args = part.args;
        tool.complete = true;
        tool.providerExecuted = Boolean(part.provider_executed);
        break;
      }
      case "tool_result": {
        const tool = this.previewTool(part.tool_call_id, part.tool_name);
        tool.result = part.result;
        tool.sources = part.sources;
        tool.isError = Boolean(part.is_error) || (part.result && part.result.type === "error");
        break;
      }
      default:
        break; // start/end markers, sources and finish carry nothing to show
    }
  }

  previewTool(id, name) {
    let tool = this.preview.find((b) => b.kind === "tool" && b.id === id);
    if (!tool) {
      tool = { kind: "tool", id, name, input: "", args: undefined, result: undefined };
      this.preview.push(tool);
    }
    return tool;
  }

  /** The reply is streaming its reasoning right now ("Thinking…"). */
  get thinking() {
    const tail = this.preview[this.preview.length - 1];
    return this.busy && Boolean(tail) && tail.kind === "reasoning";
  }
}

const HANDLERS = {
  status(state, data) {
    state.status = data.status;
    state.archived = data.archived;
    if (data.status === "interrupting") state.interrupted = true;
    else if (data.status === "pending" || data.status === "running") state.interrupted = false;
    if (data.status !== "error") state.error = null;
    if (data.status !== "requires_action") state.action = null;
    if (!BUSY.has(data.status)) state.retry = null;
  },
  message(state, data) {
    state.upsertMessage(data.message);
    if (data.message.role !== "user") state.preview = [];
  },
  message_part(state, data) {
    state.retry = null; // the attempt is streaming: whatever was retried has recovered
    state.appendPart(data.part);
  },
  preview_reset(state) {
    state.preview = [];
  },
  history_reset(state, data) {
    state.preview = [];
    const keep = data.keep_through_position;
    if (keep === null || keep === undefined) {
      state.needsReload = true; // reload the whole history (spec §5.2)
      return;
    }
    for (const [id, message] of state.messages) {
      if (message.position > keep) state.messages.delete(id);
    }
  },
  queue_update(state, data) {
    state.queue = data.queued_messages;
  },
  retry(state, data) {
    state.retry = data;
    state.retryReceivedAt = Date.now();
  },
  error(state, data) {
    state.error = data;
  },
  action_required(state, data) {
    state.action = data;
  },
  title(state, data) {
    state.title = data.title;
  },
  chat_deleted(state) {
    state.deleted = true;
  },
};

/** Seconds left before a retry, from the event (robust to clock skew and replays). */
export function retrySecondsLeft(retry, receivedAt, now = Date.now()) {
  let deadline = receivedAt + (retry.delay_ms || 0);
  const at = Date.parse(retry.retrying_at);
  if (!Number.isNaN(at)) deadline = Math.min(deadline, at);
  return Math.max(0, Math.ceil((deadline - now) / 1000));
}
