// Rendering a chat's messages and its live preview as DOM. Text from the server is
// only ever set with textContent or rendered by markdown.js (which does the same).

import { renderMarkdown, safeAnchor } from "./markdown.js";

/** Create an element: h("div", {class: "x", "aria-label": "y"}, child, "text", …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

const SUMMARIZED_TOOL = "chat_summarized";

function pretty(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

function resultText(result) {
  if (!result) return "";
  if (result.type === "text") return result.text;
  if (result.type === "error") return result.error;
  if (result.type === "media") return `${result.media_type} (${result.data.length} base64 bytes)`;
  return pretty(result);
}

/**
 * The pages a provider-executed tool (web search) used, as links opening in a new tab;
 * a title or URL is only ever text, and a URL that is not http(s) is not a link.
 */
function sourceList(name, sources) {
  return h(
    "ul",
    { class: "tool-sources", "aria-label": `Sources of ${name}` },
    sources.map((source) => {
      const label = source.title || source.url;
      const a = safeAnchor(source.url);
      if (a) {
        a.textContent = label;
        a.title = source.url;
      }
      return h("li", {}, a || h("span", { text: label }));
    }),
  );
}

/**
 * A tool call card: name and state in the summary, input and result inside. A
 * provider-executed call (web search: the provider ran it) has its sources listed
 * under the card; its result has no output of its own (`null`).
 * `openTools` remembers which cards the user expanded across re-renders.
 */
export function toolCard(
  { id, name, args, input, result, isError, pending, providerExecuted, sources },
  openTools,
) {
  const state = result === undefined
    ? (pending ? "running…" : "no result")
    : isError ? "error" : "done";
  const shown = result !== undefined && result !== null;
  const card = h(
    "details",
    {
      class: `tool tool-${state.replace("…", "")}${providerExecuted ? " tool-provider" : ""}`,
      "data-tool-call-id": id,
    },
    h(
      "summary",
      {},
      h("span", {
        class: "tool-icon",
        "aria-hidden": "true",
        text: providerExecuted ? "🔎" : "⚙",
      }),
      h("span", { class: "tool-name", text: name }),
      providerExecuted ? h("span", { class: "tool-by", text: "run by the provider" }) : null,
      h("span", { class: "tool-state", text: state }),
    ),
    h(
      "div",
      { class: "tool-body" },
      h("div", { class: "tool-label", text: "Input" }),
      h("pre", {
        class: "tool-input",
        tabindex: "0",
        "aria-label": `Input of ${name}`,
        text: pretty(args !== undefined ? args : input),
      }),
      shown ? h("div", { class: "tool-label", text: "Result" }) : null,
      shown
        ? h("pre", {
          class: "tool-result",
          tabindex: "0",
          "aria-label": `Result of ${name}`,
          text: resultText(result),
        })
        : null,
    ),
  );
  if (openTools.has(id)) card.open = true;
  card.addEventListener("toggle", () => {
    if (card.open) openTools.add(id);
    else openTools.delete(id);
  });
  // The sources are what a reader wants of a search: shown without a click.
  if (!sources || !sources.length) return card;
  return h("div", { class: "tool-with-sources" }, card, sourceList(name, sources));
}

/** The plan a `propose_plan` call carries, or null when its input is not one. */
export function planOf(args) {
  try {
    const value = typeof args === "string" ? JSON.parse(args) : args;
    return value && typeof value.plan === "string" ? value.plan : null;
  } catch {
    return null;
  }
}

/**
 * A proposed plan (plan mode): its Markdown and an Approve button, which app.js shows
 * only on the newest plan of a chat still in plan mode and idle.
 */
export function planCard(id, plan, onApprove) {
  return h(
    "section",
    { class: "plan-card", "data-tool-call-id": id, "aria-label": "Proposed plan" },
    h("h4", { text: "Proposed plan" }),
    h("div", { class: "markdown" }, renderMarkdown(plan)),
    h("button", {
      type: "button",
      class: "primary plan-approve",
      text: "Approve",
      "aria-label": "Approve the plan",
      hidden: true,
      onclick: () => onApprove(),
    }),
  );
}

function reasoningBlock(text, streaming) {
  const block = h(
    "details",
    { class: "reasoning" },
    h("summary", { text: streaming ? "Thinking…" : "Reasoning" }),
    h("div", { class: "reasoning-text", text }),
  );
  if (streaming) block.open = true;
  return block;
}

/**
 * Render the committed history into `container`.
 * `actions` = {onEdit(message), editing: id|null, editForm(message) → element, openTools,
 * onApprove()}.
 */
export function renderMessages(container, messages, actions) {
  const results = new Map();
  const calls = new Set();
  for (const message of messages) {
    for (const part of message.parts) {
      if (part.type === "tool_result") results.set(part.tool_call_id, part);
      if (part.type === "tool_call") calls.add(part.tool_call_id);
    }
  }
  const nodes = [];
  for (const message of messages) {
    const node = renderMessage(message, results, calls, actions);
    if (node) nodes.push(node);
  }
  container.replaceChildren(...nodes);
}

function renderMessage(message, results, calls, actions) {
  const { role } = message;
  if (role === "system") {
    if (message.kind !== "system_prompt") return null;
    return h(
      "details",
      { class: "message system" },
      h("summary", { text: "System prompt" }),
      h("div", { class: "message-text", text: textOf(message) }),
    );
  }
  if (message.kind === "boundary") {
    if (role !== "assistant") return null;
    const call = message.parts.find((p) => p.type === "tool_call");
    const summary = call && results.get(call.tool_call_id);
    return h(
      "details",
      { class: "message compaction", "data-message-id": message.id },
      h("summary", { text: "Conversation summarized" }),
      h("div", { class: "message-text", text: summary ? resultText(summary.result) : "" }),
    );
  }
  if (role === "user") {
    if (actions.editing === message.id) {
      return h("article", { class: "message user editing", "data-message-id": message.id },
        actions.editForm(message));
    }
    return h(
      "article",
      { class: "message user", "data-message-id": message.id, "aria-label": "You" },
      fileChips(message.parts),
      h("div", { class: "message-text", text: textOf(message) }),
      h("button", {
        type: "button",
        class: "edit",
        text: "Edit",
        "aria-label": `Edit message: ${textOf(message).slice(0, 60)}`,
        onclick: () => actions.onEdit(message),
      }),
    );
  }
  const body = [];
  for (const part of message.parts) {
    if (part.type === "text") body.push(h("div", { class: "markdown" }, renderMarkdown(part.text)));
    else if (part.type === "reasoning") body.push(reasoningBlock(part.text, false));
    else if (part.type === "tool_call" && part.tool_name === "propose_plan" && planOf(part.args) !== null) {
      body.push(planCard(part.tool_call_id, planOf(part.args), actions.onApprove));
    } else if (part.type === "tool_call") {
      const result = results.get(part.tool_call_id);
      body.push(
        toolCard(
          {
            id: part.tool_call_id,
            name: part.tool_name,
            args: part.args,
            result: result ? result.result : undefined,
            isError: result ? result.result && result.result.type === "error" : false,
            providerExecuted: part.provider_executed,
            sources: result ? result.sources : undefined,
          },
          actions.openTools,
        ),
      );
    } else if (part.type === "tool_result" && !calls.has(part.tool_call_id)) {
      body.push(
        toolCard(
          {
            id: part.tool_call_id,
            name: part.tool_name,
            result: part.result,
            isError: part.result && part.result.type === "error",
            providerExecuted: part.provider_executed,
            sources: part.sources,
          },
          actions.openTools,
        ),
      );
    } else if (part.type === "source") {
      body.push(h("div", { class: "source", text: `Source: ${part.title || part.url}` }));
    }
  }
  const files = fileChips(message.parts);
  if (files) body.unshift(files);
  if (!body.length) return null;
  return h(
    "article",
    { class: `message ${role}`, "data-message-id": message.id, "aria-label": "Assistant" },
    body,
  );
}

/**
 * A message's files as chips; an image's chip has a thumbnail whose `src` is filled in
 * by attachments.js (fetched with the token), so no file URL ever carries credentials.
 */
export function fileChips(parts) {
  const files = parts.filter((p) => p.type === "file");
  if (!files.length) return null;
  return h(
    "ul",
    { class: "file-chips", "aria-label": "Attached files" },
    files.map((part) => {
      const label = `${part.name || "file"} (${part.media_type || "file"})`;
      const thumb = part.media_type && part.media_type.startsWith("image/") && part.file_id
        ? h("img", { class: "thumb", alt: "", "data-file-id": part.file_id })
        : h("span", { class: "file-icon", "aria-hidden": "true", text: "📎" });
      return h(
        "li",
        { class: "file-chip", title: label, "data-file-id": part.file_id || undefined },
        thumb,
        h("span", { class: "file-name", text: part.name || "file" }),
        h("span", { class: "visually-hidden", text: ` (${part.media_type || "file"})` }),
      );
    }),
  );
}

function textOf(message) {
  return message.parts
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("\n");
}

/** Render the live (uncommitted) preview of the current step. */
export function renderPreview(container, preview, busy, openTools) {
  if (!preview.length) {
    container.replaceChildren();
    container.hidden = true;
    return;
  }
  container.hidden = false;
  const last = preview[preview.length - 1];
  const body = preview.map((block) => {
    if (block.kind === "text") return h("div", { class: "markdown" }, renderMarkdown(block.text));
    if (block.kind === "reasoning") return reasoningBlock(block.text, busy && block === last);
    return toolCard({ ...block, pending: busy }, openTools);
  });
  container.replaceChildren(...body);
}
