// chatd's browser UI: a thin client of the public HTTP API and the SSE stream.
// Sign in with a token, list chats, watch one live, send / queue / interrupt / edit,
// answer client-tool requests, pick the built-in tools of a new chat. State per chat
// lives in ChatState (chatstate.js); this module wires the DOM to it.

import { Api } from "./api.js";
import { Attachments, watchThumbnails, wireAttachments } from "./attachments.js";
import { BUSY, ChatState, retrySecondsLeft } from "./chatstate.js";
import { costSummary } from "./cost.js";
import { ChatStream } from "./stream.js";
import { allowedLevels, builtinLabel, builtinNames, toolsForLevel } from "./tools.js";
import { h, renderMessages, renderPreview } from "./view.js";

const TOKEN_KEY = "chatd.token";
// The tools level for new chats: kept for the tab's session, not per chat.
const TOOLS_KEY = "chatd.tools";
const LIST_POLL_MS = 4000;
// How often the open chat's agents' statuses are read while any of them works.
const AGENT_POLL_MS = 1000;

const $ = (id) => document.getElementById(id);

const app = {
  api: null,
  models: [],
  allowedTools: [], // built-in tool names this user may enable (GET /api/users/me)
  toolLevel: sessionStorage.getItem(TOOLS_KEY) || "off",
  chat: null, // ChatState of the open chat
  stream: null,
  connection: "closed",
  editing: null,
  openTools: new Set(),
  notice: null, // {kind, message, status} from a failed request
  // The model the user picked for the open chat (or the new chat) since opening it;
  // null: untouched, so a send leaves the chat's model as it is.
  pickedModel: null,
  messagesDirty: true,
  renderQueued: false,
  actionKey: "",
  queueKey: "",
  opening: 0,
  cost: null, // {chatId, body}: GET /api/chats/{id}/cost of the open chat
  listed: new Map(), // id → chat summary of the sidebar's last page
};

// ---------------------------------------------------------------- sign in

async function signIn(token) {
  const api = new Api(token);
  const me = await whoAmI(api);
  app.api = api;
  localStorage.setItem(TOKEN_KEY, token);
  $("whoami").textContent = me ? `Signed in as ${me.username}` : "Signed in";
  // A server without the field lets no one enable built-in tools from here.
  app.allowedTools = me && Array.isArray(me.builtin_tools) ? me.builtin_tools : [];
  await loadModels();
  await refreshList();
  await route();
  // Shown once routed: a model picked before the first route would be reset by it.
  $("signin").hidden = true;
  $("app").hidden = false;
}

/** The token's user; null from a server without /api/users/me (the token is checked anyway). */
async function whoAmI(api) {
  try {
    return await api.me();
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  await api.models(); // a refused token throws here instead
  return null;
}

function showSignIn(message = "") {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("token-input").focus();
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  closeChat();
  app.api = null;
  location.hash = "";
  $("token-input").value = "";
  showSignIn();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    await signIn($("token-input").value.trim());
  } catch (err) {
    showSignIn(err.status === 401 ? "That token is not valid." : err.message);
  }
});
$("signout").addEventListener("click", signOut);

// ---------------------------------------------------------------- models and chat list

let modelsRequest = 0;

async function loadModels() {
  const request = ++modelsRequest;
  let models;
  try {
    ({ models } = await app.api.models());
  } catch {
    return;
  }
  if (request !== modelsRequest) return; // a newer request answers instead
  app.models = models;
  renderModelPicker();
}

const modelLabel = (m) => `${m.name} (${m.provider}:${m.model})`;

/** The picker shows the open chat's own model, or what the user picked for it since it
 * was opened. A chat without a model of its own (and a new chat) runs on the deployment
 * default, offered as "Default: …" (value ""); the API cannot set a chat's model back
 * to none, so a chat with its own model is not offered it. */
function renderModelPicker() {
  const state = app.chat;
  const own = state ? state.modelConfigId : null;
  const options = app.models.map((m) => [m.id, modelLabel(m)]);
  if (own === null) {
    const fallback = app.models.find((m) => m.is_default);
    options.unshift(["", fallback ? `Default: ${modelLabel(fallback)}` : "Default"]);
  } else if (!app.models.some((m) => m.id === own)) {
    options.unshift([own, `${state.model || "Its model"} (disabled)`]);
  }
  const select = $("model-select");
  const key = JSON.stringify(options);
  if (select.dataset.options !== key) {
    select.dataset.options = key;
    select.replaceChildren(...options.map(([value, text]) => h("option", { value, text })));
  }
  const shown = app.pickedModel ?? own ?? "";
  select.value = options.some(([value]) => value === shown) ? shown : (own ?? "");
  renderWebSearch();
}

$("model-select").addEventListener("change", (event) => {
  app.pickedModel = event.target.value;
  renderWebSearch();
});

/** A new chat may ask for web search when the model it would run on (the picked one,
 * else the deployment default) allows it; the server checks again. */
function renderWebSearch() {
  const picked = app.pickedModel;
  const model = app.chat
    ? null
    : app.models.find((m) => (picked ? m.id === picked : m.is_default));
  $("web-search-picker").hidden = !(model && (model.provider_tools || []).includes("web_search"));
}

/** The provider tools a new chat asks for. */
function chosenProviderTools() {
  return !$("web-search-picker").hidden && $("web-search").checked ? ["web_search"] : [];
}

let listRequest = 0;

async function refreshList() {
  if (!app.api) return;
  const request = ++listRequest;
  const q = $("search").value.trim();
  let page;
  try {
    page = await app.api.listChats({ q, archived: $("show-archived").checked });
  } catch (err) {
    if (err.status === 401) showSignIn("Your token is no longer valid.");
    return;
  }
  if (request !== listRequest) return; // a newer request answers instead
  // Title search is the server's (?q=); filtering here too keeps older servers right.
  const needle = q.toLowerCase();
  renderList(page.chats.filter((c) => !needle || (c.title || "").toLowerCase().includes(needle)));
}

function renderList(chats) {
  app.listed = new Map(chats.map((chat) => [chat.id, chat]));
  const current = app.chat ? app.chat.id : null;
  const list = $("chat-list");
  const focused = document.activeElement && document.activeElement.dataset.chatId;
  // Agents (child chats) nest under their parent when it is listed too.
  const listed = new Set(chats.map((chat) => chat.id));
  const childrenOf = new Map();
  for (const chat of chats) {
    if (chat.parent_id && listed.has(chat.parent_id)) {
      if (!childrenOf.has(chat.parent_id)) childrenOf.set(chat.parent_id, []);
      childrenOf.get(chat.parent_id).push(chat);
    }
  }
  const item = (chat, agent) => {
    const status = current === chat.id ? app.chat.status : chat.status;
    const title = (current === chat.id ? app.chat.title : chat.title) || "Untitled chat";
    const words = status.replace("_", " ");
    const button = h(
      "button",
      {
        type: "button",
        class: "chat-item",
        "data-chat-id": chat.id,
        "aria-current": current === chat.id ? "page" : null,
        "aria-label": `${agent ? "Agent: " : ""}${title} — ${words}${chat.archived ? ", archived" : ""}`,
        onclick: () => {
          location.hash = `#/chat/${chat.id}`;
        },
      },
      h("span", { class: "chat-item-title", text: title }),
      h("span", { class: `badge status-${status}`, text: words }),
    );
    const children = childrenOf.get(chat.id) || [];
    // Oldest agent first, as the parent lists them.
    children.sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
    const nested = children.length
      ? [h("ul", { class: "chat-children", "aria-label": `Agents of ${title}` }, ...children.map((c) => item(c, true)))]
      : [];
    return h("li", {}, button, ...nested);
  };
  const top = chats.filter((chat) => !(chat.parent_id && listed.has(chat.parent_id)));
  list.replaceChildren(...top.map((chat) => item(chat, false)));
  $("chat-list-empty").hidden = chats.length > 0;
  if (focused) {
    const again = list.querySelector(`[data-chat-id="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refreshList, 200);
});
$("show-archived").addEventListener("change", refreshList);
setInterval(() => {
  if (!document.hidden) refreshList();
}, LIST_POLL_MS);

// ---------------------------------------------------------------- opening a chat

async function route() {
  const match = /^#\/chat\/([\w-]+)$/.exec(location.hash);
  if (match) await openChat(match[1]);
  else newChat();
}
window.addEventListener("hashchange", () => {
  // "New chat" resets the view before it changes the address: doing it again here
  // would undo a model the user picked in between.
  const toNewChat = !/^#\/chat\//.test(location.hash);
  if (app.api && !(toNewChat && app.chat === null)) route();
});

function closeChat() {
  if (app.stream) app.stream.close();
  app.stream = null;
  app.chat = null;
  app.editing = null;
  app.notice = null;
  app.pickedModel = null;
  app.openTools.clear();
  app.connection = "closed";
}

function newChat() {
  closeChat();
  app.messagesDirty = true;
  renderModelPicker();
  render();
  refreshList();
  loadModels();
}

async function openChat(id) {
  if (app.chat && app.chat.id === id) return;
  closeChat();
  const attempt = ++app.opening;
  let chat;
  let page;
  try {
    [chat, page] = await Promise.all([app.api.chat(id), app.api.messages(id)]);
  } catch (err) {
    if (attempt !== app.opening) return;
    app.notice = err;
    render();
    return;
  }
  if (attempt !== app.opening) return; // the user opened another chat meanwhile
  // A busy chat replays its retained stream so the step in progress shows from its
  // first part; an idle one resumes right after the history it just read (spec §6.5).
  const busy = ["pending", "running", "interrupting"].includes(chat.status);
  const state = new ChatState(chat, page.messages, busy ? 0 : page.last_seq);
  app.chat = state;
  app.messagesDirty = true;
  renderModelPicker();
  app.stream = new ChatStream(
    (after) => app.api.streamUrl(id, after),
    () => state.lastSeq,
    (type, data) => onEvent(state, type, data),
    (connection) => {
      if (app.chat !== state) return;
      app.connection = connection;
      scheduleRender();
    },
  );
  app.stream.open();
  refreshCost(state);
  render();
  refreshList();
  loadModels();
}

function onEvent(state, type, data) {
  if (app.chat !== state) return;
  if (!state.apply(type, data)) return; // already applied: a replay after reconnecting
  if (type === "message" || type === "history_reset") app.messagesDirty = true;
  if (type === "status" || type === "title") refreshList();
  if (type === "status") {
    refreshCost(state);
    refreshAgents(state);
  }
  if (state.needsReload) reloadMessages(state);
  scheduleRender();
}

async function reloadMessages(state) {
  state.needsReload = false;
  try {
    const page = await app.api.messages(state.id);
    state.replaceMessages(page.messages);
  } catch (err) {
    app.notice = err;
  }
  app.messagesDirty = true;
  scheduleRender();
}

// ---------------------------------------------------------------- rendering

function scheduleRender() {
  if (app.renderQueued) return;
  app.renderQueued = true;
  requestAnimationFrame(() => {
    app.renderQueued = false;
    render();
  });
}

function render() {
  const state = app.chat;
  const conversation = $("conversation");
  const nearBottom =
    conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;

  $("chat-title").textContent = state ? state.title || "Untitled chat" : "New chat";
  const badge = $("chat-status");
  badge.hidden = !state;
  if (state) {
    const shown = state.waitingForAgents ? "waiting_for_agents" : state.status;
    badge.textContent = shown.replaceAll("_", " ");
    badge.className = `badge status-${shown}`;
  }
  $("archive").hidden = !state;
  $("compact").hidden = !state;
  renderTools(state);
  renderCost(state);
  renderAgents(state);
  if (state) {
    $("archive").textContent = state.archived ? "Unarchive" : "Archive";
  }

  if (app.messagesDirty) {
    app.messagesDirty = false;
    renderMessages($("messages"), state ? state.orderedMessages() : [], {
      editing: app.editing,
      onEdit: startEdit,
      editForm,
      openTools: app.openTools,
      onApprove: approvePlan,
    });
  }
  showApprove(state);
  renderPreview($("preview"), state ? state.preview : [], Boolean(state && state.busy), app.openTools);
  $("empty-chat").hidden = Boolean(state && (state.messages.size || state.preview.length));

  renderQueue(state);
  renderAction(state);
  renderStatusLine(state);
  renderComposer(state);
  if (nearBottom) conversation.scrollTop = conversation.scrollHeight;
}

/** The open chat's agents (or the chat it is an agent of), each a link with its status. */
function renderAgents(state) {
  const children = state ? state.children : [];
  const parentId = state ? state.parentId : null;
  $("agents").hidden = !children.length && !parentId;
  $("agent-of").hidden = !parentId;
  if (parentId) {
    const link = $("agent-parent");
    link.href = `#/chat/${parentId}`;
    const parent = app.listed.get(parentId);
    link.textContent = (parent && parent.title) || "its parent chat";
  }
  $("agent-children").hidden = !children.length;
  $("agent-list").replaceChildren(
    ...children.map((child) => {
      const title = child.title || "Untitled agent";
      const words = child.status.replace("_", " ");
      return h(
        "li",
        {},
        h(
          "a",
          { href: `#/chat/${child.id}`, "data-agent-id": child.id, "aria-label": `${title} — ${words}` },
          h("span", { text: title }),
          h("span", { class: `badge status-${child.status}`, text: words }),
        ),
      );
    }),
  );
}

/** Read the open chat's agents again (their statuses change with no event of its own). */
async function refreshAgents(state) {
  let chat;
  try {
    chat = await app.api.chat(state.id);
  } catch {
    return; // kept as shown; the next poll or status change retries
  }
  if (app.chat !== state) return;
  state.children = chat.children || [];
  scheduleRender();
}

setInterval(() => {
  const state = app.chat;
  if (state && !document.hidden && (state.agentsBusy || state.waitingForAgents)) refreshAgents(state);
}, AGENT_POLL_MS);

/** The open chat's cost and tokens, read again whenever its status changes. */
async function refreshCost(state) {
  try {
    const body = await app.api.cost(state.id);
    if (app.chat === state) app.cost = { chatId: state.id, body };
  } catch {
    return; // the badge keeps what it showed; the next status change retries
  }
  scheduleRender();
}

function renderCost(state) {
  const badge = $("chat-cost");
  const known = state && app.cost && app.cost.chatId === state.id ? app.cost.body : null;
  const summary = costSummary(known);
  badge.hidden = !summary;
  if (summary) {
    badge.textContent = summary.text;
    badge.title = summary.title;
  }
}

/** A new chat: the tools picker (levels this user may enable); an open chat: its tools. */
function renderTools(state) {
  const levels = allowedLevels(app.allowedTools);
  // Only "off" to offer: the user may enable no built-in tool, so there is no choice.
  $("tools-picker").hidden = Boolean(state) || levels.length < 2;
  const select = $("tools-select");
  const key = levels.join(",");
  if (select.dataset.levels !== key) {
    select.dataset.levels = key;
    select.replaceChildren(
      ...levels.map((level) =>
        h("option", {
          value: level,
          text: level,
          title: level === "off" ? "No built-in tools" : toolsForLevel(level).join(", "),
        }),
      ),
    );
  }
  select.value = levels.includes(app.toolLevel) ? app.toolLevel : "off";
  renderWebSearch();

  const badge = $("chat-builtin-tools");
  const label = state ? builtinLabel(state.builtinTools) : "";
  badge.hidden = !label;
  badge.textContent = label ? `tools: ${label}` : "";
  badge.title = label ? `Built-in tools: ${builtinNames(state.builtinTools).join(", ")}` : "";
}

/** The built-in tool names a new chat asks for: the chosen level, if this user may pick it. */
function chosenTools() {
  const level = app.toolLevel;
  return allowedLevels(app.allowedTools).includes(level) ? toolsForLevel(level) : [];
}

$("tools-select").addEventListener("change", (event) => {
  app.toolLevel = event.target.value;
  sessionStorage.setItem(TOOLS_KEY, app.toolLevel);
});

function chip(text, kind = "") {
  return h("span", { class: `chip ${kind}`, text });
}

function renderStatusLine(state) {
  const line = $("status-line");
  const items = [];
  if (app.connection === "reconnecting") {
    items.push(h("span", { class: "status-item reconnecting", text: "Reconnecting…" }));
  }
  if (state && state.retry && state.busy) {
    const retry = state.retry;
    const seconds = retrySecondsLeft(retry, state.retryReceivedAt);
    items.push(
      h(
        "span",
        { class: "status-item retrying" },
        h("span", { class: "countdown", text: seconds > 0 ? `Retrying in ${seconds} s` : "Retrying now…" }),
        chip(retry.kind, "kind"),
        retry.status_code ? chip(`HTTP ${retry.status_code}`, "http") : null,
        h("span", { class: "status-message", text: retry.error || "" }),
        h("span", { class: "attempt", text: `attempt ${retry.attempt}` }),
      ),
    );
  }
  if (state && state.status === "error" && state.error) {
    items.push(errorChip(state.error.kind, state.error.status_code, state.error.message));
  }
  if (state && state.waitingForAgents) {
    const working = state.children.filter((c) => BUSY.has(c.status));
    const text = working.length
      ? `Waiting for ${working.length} of ${state.children.length} agents…`
      : "Waiting for its agents…";
    items.push(h("span", { class: "status-item working", text }));
  } else if (state && state.status === "requires_action") {
    items.push(h("span", { class: "status-item", text: "Waiting for your client tool results." }));
  }
  if (state && state.status === "interrupting") {
    items.push(h("span", { class: "status-item", text: "Interrupting…" }));
  } else if (state && state.interrupted && !state.busy) {
    items.push(h("span", { class: "status-item interrupted", text: "Chat interrupted" }));
  } else if (state && state.busy && !(state.retry && state.busy)) {
    const text = state.thinking ? "Thinking…" : state.status === "pending" ? "Starting…" : "Generating…";
    items.push(h("span", { class: "status-item working", text }));
  }
  if (app.notice) {
    items.push(errorChip(app.notice.kind, app.notice.status || null, app.notice.message));
  }
  line.replaceChildren(...items);
}

function errorChip(kind, statusCode, message) {
  return h(
    "span",
    { class: "status-item error-chip", role: "alert" },
    chip(kind || "error", "kind error"),
    statusCode ? chip(`HTTP ${statusCode}`, "http error") : null,
    h("span", { class: "status-message", text: message || "" }),
  );
}

setInterval(() => {
  if (app.chat && app.chat.retry) renderStatusLine(app.chat);
}, 250);

function renderComposer(state) {
  const busy = Boolean(state && state.busy);
  const send = $("send");
  send.textContent = busy ? "Queue" : "Send";
  send.setAttribute("aria-label", busy ? "Queue after the current turn" : "Send");
  $("send-interrupt").hidden = !busy;
  $("interrupt").hidden = !(state && (busy || state.status === "requires_action"));
}

function renderQueue(state) {
  const queue = state ? state.queue : [];
  $("queue").hidden = queue.length === 0;
  // Rebuild only when the queue changed, or its buttons vanish under the pointer.
  const key = `${state ? state.id : ""}|${queue.map((item) => item.id).join(",")}`;
  if (key === app.queueKey) return;
  app.queueKey = key;
  $("queue-list").replaceChildren(
    ...queue.map((item) => {
      const text = item.parts.filter((p) => p.type === "text").map((p) => p.text).join("\n");
      const short = text.slice(0, 60);
      return h(
        "li",
        { class: "queued", "data-queued-id": item.id },
        h("span", { class: "queued-text", text }),
        h("button", {
          type: "button",
          text: "Send now",
          "aria-label": `Send now: ${short}`,
          onclick: () => act(() => app.api.promoteQueued(state.id, item.id)),
        }),
        h("button", {
          type: "button",
          text: "Delete",
          "aria-label": `Delete queued message: ${short}`,
          onclick: () => act(() => app.api.deleteQueued(state.id, item.id)),
        }),
      );
    }),
  );
}

/** Only the newest plan of an idle chat still in plan mode can be approved. */
function showApprove(state) {
  const cards = [...$("messages").querySelectorAll(".plan-card")];
  const approvable = state && state.mode === "plan" && !state.busy && state.status !== "requires_action";
  cards.forEach((card, i) => {
    card.querySelector(".plan-approve").hidden = !(approvable && i === cards.length - 1);
  });
}

async function approvePlan() {
  const state = app.chat;
  if (!state) return;
  const answer = await act(() => app.api.approvePlan(state.id));
  if (answer && app.chat === state) {
    state.mode = answer.chat.mode;
    scheduleRender();
  }
}

function renderAction(state) {
  const action = state && state.status === "requires_action" ? state.action : null;
  const section = $("action-required");
  section.hidden = !action;
  const key = action
    ? `${action.deadline_at}|${action.tool_calls.map((c) => c.tool_call_id).join(",")}`
    : "";
  if (key === app.actionKey) return; // keep what the user typed
  app.actionKey = key;
  if (!action) {
    $("action-calls").replaceChildren();
    return;
  }
  $("action-calls").replaceChildren(
    ...action.tool_calls.map((call, i) => call.tool_name === "ask_user_question"
      ? questionField(call, i)
      : h(
        "fieldset",
        { class: "action-call", "data-tool-call-id": call.tool_call_id },
        h("legend", { text: `Tool ${call.tool_name}` }),
        h("div", { class: "tool-label", text: "Arguments" }),
        h("pre", {
          class: "tool-input",
          tabindex: "0",
          "aria-label": `Arguments of ${call.tool_name}`,
          text: prettyArgs(call.args),
        }),
        h("label", { for: `action-result-${i}`, text: `Result for ${call.tool_name}` }),
        h("textarea", { id: `action-result-${i}`, rows: "3", "data-tool-call-id": call.tool_call_id }),
        h(
          "label",
          { class: "checkbox" },
          h("input", { type: "checkbox", id: `action-error-${i}` }),
          " Report as an error",
        ),
      ),
    ),
  );
  const deadline = new Date(action.deadline_at);
  $("action-deadline").textContent = Number.isNaN(deadline.getTime())
    ? ""
    : `Answer before ${deadline.toLocaleTimeString()}, or the turn ends with an error.`;
}

/** A question the model asks the user: its choices as buttons (one answers at once), or
 * a free answer. The answer goes back as the tool's result. */
function questionField(call, i) {
  let args = {};
  try {
    args = (typeof call.args === "string" ? JSON.parse(call.args) : call.args) || {};
  } catch {
    args = {};
  }
  const choices = Array.isArray(args.choices) ? args.choices.map(String) : [];
  const answer = h("textarea", {
    id: `action-result-${i}`,
    rows: "2",
    "data-tool-call-id": call.tool_call_id,
    hidden: choices.length > 0,
  });
  return h(
    "fieldset",
    { class: "action-call question", "data-tool-call-id": call.tool_call_id },
    h("legend", { text: "The model asks" }),
    h("p", { class: "question-text", text: String(args.question || "") }),
    choices.length
      ? h(
        "div",
        { class: "question-choices", role: "group", "aria-label": "Choices" },
        choices.map((choice) =>
          h("button", {
            type: "button",
            class: "choice",
            text: choice,
            onclick: () => {
              answer.value = choice;
              $("action-form").requestSubmit();
            },
          })),
      )
      : h("label", { for: `action-result-${i}`, text: "Your answer" }),
    answer,
    h("input", { type: "checkbox", id: `action-error-${i}`, hidden: true }),
  );
}

function prettyArgs(args) {
  try {
    return JSON.stringify(typeof args === "string" ? JSON.parse(args) : args, null, 2);
  } catch {
    return String(args);
  }
}

$("action-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const state = app.chat;
  if (!state || !state.action) return;
  const results = state.action.tool_calls.map((call, i) => {
    const text = $(`action-result-${i}`).value;
    return $(`action-error-${i}`).checked
      ? { tool_call_id: call.tool_call_id, output: { type: "error", error: text } }
      : { tool_call_id: call.tool_call_id, output: { type: "text", text } };
  });
  await act(() => app.api.toolResults(state.id, results));
});

// ---------------------------------------------------------------- actions

/** Run an API call; a failure becomes the status line's error chip. */
async function act(call) {
  app.notice = null;
  try {
    const result = await call();
    scheduleRender();
    return result;
  } catch (err) {
    if (err.status === 401) showSignIn("Your token is no longer valid.");
    app.notice = err;
    scheduleRender();
    return undefined;
  }
}

/** The model a send asks for: only one the user picked for this chat, and not its own. */
function selectedModel(state) {
  const picked = app.pickedModel;
  if (!picked) return undefined; // untouched, or "Default" where the chat has no model
  return state && picked === state.modelConfigId ? undefined : picked;
}

async function submitMessage(busyBehavior) {
  const input = $("composer-input");
  const text = input.value;
  if (!text.trim() && !attachments.count) return;
  // Clear at once so the next message can be typed while this one travels; a
  // failed send puts the text back (unless something new was typed meanwhile).
  input.value = "";
  const restore = () => {
    if (!input.value) input.value = text;
  };
  const fileIds = await attachments.ready();
  if (!text.trim() && !fileIds.length) return restore(); // every file was refused
  const state = app.chat;
  if (!state) {
    const chat = await act(() =>
      app.api.createChat(text, selectedModel(null), chosenTools(), fileIds, chosenProviderTools()),
    );
    if (chat) {
      attachments.clear();
      location.hash = `#/chat/${chat.id}`;
    } else restore();
    return;
  }
  const model = selectedModel(state);
  if (busyBehavior === "interrupt") state.interrupted = true;
  const sent = await act(() => app.api.send(state.id, text, busyBehavior, model, fileIds));
  if (sent) attachments.clear();
  if (!sent) restore();
  else if (model) {
    state.modelConfigId = model;
    if (app.chat === state) renderModelPicker();
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  submitMessage("queue");
});
$("send-interrupt").addEventListener("click", () => submitMessage("interrupt"));
$("composer-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submitMessage("queue");
  } else if (event.key === "Escape" && app.chat && app.chat.busy) {
    event.preventDefault();
    interrupt();
  }
});

async function interrupt() {
  const state = app.chat;
  if (!state) return;
  state.interrupted = true;
  await act(() => app.api.interrupt(state.id));
}
$("interrupt").addEventListener("click", interrupt);

$("archive").addEventListener("click", async () => {
  const state = app.chat;
  if (!state) return;
  const chat = await act(() => app.api.patchChat(state.id, { archived: !state.archived }));
  if (chat) {
    state.archived = chat.archived;
    render();
    refreshList();
  }
});

$("compact").addEventListener("click", async () => {
  const state = app.chat;
  if (state) await act(() => app.api.compact(state.id));
});

$("new-chat").addEventListener("click", () => {
  newChat();
  if (location.hash !== "" && location.hash !== "#/") location.hash = "#/";
  $("composer-input").focus();
});

function startEdit(message) {
  app.editing = message.id;
  app.messagesDirty = true;
  render();
  const box = document.getElementById("edit-input");
  if (box) box.focus();
}

function editForm(message) {
  const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("\n");
  const cancel = () => {
    app.editing = null;
    app.messagesDirty = true;
    render();
  };
  const form = h(
    "form",
    {
      class: "edit-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = form.querySelector("textarea").value;
        if (!value.trim()) return;
        const state = app.chat;
        const done = await act(() => app.api.edit(state.id, message.id, value));
        if (done) cancel();
      },
    },
    h("label", { for: "edit-input", text: "Edit message" }),
    h("textarea", {
      id: "edit-input",
      rows: "3",
      onkeydown: (event) => {
        if (event.key === "Escape") cancel();
      },
    }),
    h(
      "div",
      { class: "edit-buttons" },
      h("button", { type: "submit", class: "primary", text: "Save and rerun" }),
      h("button", { type: "button", text: "Cancel", onclick: cancel }),
    ),
  );
  form.querySelector("textarea").value = text;
  return form;
}

// ---------------------------------------------------------------- attachments

const attachments = new Attachments(() => app.api, $("attachments"));
wireAttachments(attachments, {
  button: $("attach"),
  picker: $("file-input"),
  input: $("composer-input"),
  dropZones: [$("composer"), $("conversation")],
});
watchThumbnails($("messages"), () => app.api);

// ---------------------------------------------------------------- start

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) {
  signIn(saved).catch(() => showSignIn("Sign in again: the saved token was refused."));
} else {
  showSignIn();
}
